//! Ctrl-C and SIGTERM, as the future a binary passes on as its shutdown.

use tracing::warn;

/// Listens for Ctrl-C or SIGTERM from this call on and resolves when one arrives. The
/// handlers are installed before it returns, so call it before starting anything: a
/// signal that arrives while the node starts (a supervisor or a test stopping it as soon
/// as it prints its ports) then stops it cleanly instead of killing it.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                }
                (Err(error), _) | (_, Err(error)) => {
                    warn!(%error, "cannot listen for SIGTERM; stopping on Ctrl-C only");
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
