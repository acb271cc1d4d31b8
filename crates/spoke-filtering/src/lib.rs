//! spoke-filtering
