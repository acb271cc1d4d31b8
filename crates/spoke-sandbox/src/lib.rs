//! spoke-sandbox
