//! spoke-platform
