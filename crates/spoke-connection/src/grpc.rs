//! The `spoke.connection.v1.ConnectionService` gRPC service: authentication checks and request validation,
//! then calls into the domain. Methods not built yet answer UNIMPLEMENTED.

use spoke_proto::connection::v1::connection_service_server::ConnectionService;

/// The gRPC face of the connection service.
#[derive(Debug, Clone)]
pub struct ConnectionServiceImpl {
    #[allow(dead_code)]
    pool: sqlx::PgPool,
}

impl ConnectionServiceImpl {
    /// A service over the given pool.
    pub fn new(pool: sqlx::PgPool) -> Self {
        Self { pool }
    }
}

#[tonic::async_trait]
impl ConnectionService for ConnectionServiceImpl {}
