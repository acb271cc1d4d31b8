//! The `spoke.filtering.v1.FilteringService` gRPC service: authentication checks and request validation,
//! then calls into the domain. Methods not built yet answer UNIMPLEMENTED.

use spoke_proto::filtering::v1::filtering_service_server::FilteringService;

/// The gRPC face of the filtering service.
#[derive(Debug, Clone)]
pub struct FilteringServiceImpl {
    #[allow(dead_code)]
    pool: sqlx::PgPool,
}

impl FilteringServiceImpl {
    /// A service over the given pool.
    pub fn new(pool: sqlx::PgPool) -> Self {
        Self { pool }
    }
}

#[tonic::async_trait]
impl FilteringService for FilteringServiceImpl {}
