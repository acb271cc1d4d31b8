//! spoke-devbroker
