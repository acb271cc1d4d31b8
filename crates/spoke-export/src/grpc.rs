//! The `spoke.export.v1.ExportService` gRPC service: authentication checks and request validation,
//! then calls into the domain. Methods not built yet answer UNIMPLEMENTED.

use spoke_proto::export::v1::export_service_server::ExportService;

/// The gRPC face of the export service.
#[derive(Debug, Clone)]
pub struct ExportServiceImpl {
    #[allow(dead_code)]
    pool: sqlx::PgPool,
}

impl ExportServiceImpl {
    /// A service over the given pool.
    pub fn new(pool: sqlx::PgPool) -> Self {
        Self { pool }
    }
}

#[tonic::async_trait]
impl ExportService for ExportServiceImpl {}
