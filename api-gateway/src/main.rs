//! api-gateway: the binary. Everything is in the library (`api_gateway::start`) and
//! `service_runtime::main`.

service_runtime::service_main!("api-gateway", api_gateway);
