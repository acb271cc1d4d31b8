//! spoke-mapping
