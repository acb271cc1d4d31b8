//! The `spoke.mapping.v1.MappingService` gRPC service: authentication checks and request validation,
//! then calls into the domain. Methods not built yet answer UNIMPLEMENTED.

use spoke_proto::mapping::v1::mapping_service_server::MappingService;

/// The gRPC face of the mapping service.
#[derive(Debug, Clone)]
pub struct MappingServiceImpl {
    #[allow(dead_code)]
    pool: sqlx::PgPool,
}

impl MappingServiceImpl {
    /// A service over the given pool.
    pub fn new(pool: sqlx::PgPool) -> Self {
        Self { pool }
    }
}

#[tonic::async_trait]
impl MappingService for MappingServiceImpl {}
