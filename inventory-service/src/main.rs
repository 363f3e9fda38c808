//! inventory-service: the binary. Everything is in the library (`inventory_service::start`) and
//! `service_runtime::main`.

service_runtime::service_main!("inventory-service", inventory_service);
