//! The `spoke.dedupe.v1.DedupeService` gRPC service: authentication checks and request validation,
//! then calls into the domain. Methods not built yet answer UNIMPLEMENTED.

use spoke_proto::dedupe::v1::dedupe_service_server::DedupeService;

/// The gRPC face of the dedupe service.
#[derive(Debug, Clone)]
pub struct DedupeServiceImpl {
    #[allow(dead_code)]
    pool: sqlx::PgPool,
}

impl DedupeServiceImpl {
    /// A service over the given pool.
    pub fn new(pool: sqlx::PgPool) -> Self {
        Self { pool }
    }
}

#[tonic::async_trait]
impl DedupeService for DedupeServiceImpl {}
