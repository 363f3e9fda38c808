//! order-service: the binary. Everything is in the library (`order_service::start`) and
//! `service_runtime::main`.

service_runtime::service_main!("order-service", order_service);
