//! user-service: the binary. Everything is in the library (`user_service::start`) and
//! `service_runtime::main`.

service_runtime::service_main!("user-service", user_service);
