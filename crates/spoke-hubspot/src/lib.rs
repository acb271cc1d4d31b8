//! spoke-hubspot
