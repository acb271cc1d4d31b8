//! spoke-connection
