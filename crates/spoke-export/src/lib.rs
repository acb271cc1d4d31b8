//! spoke-export
