//! Graceful shutdown: SIGTERM (what k3s sends) or SIGINT cancel a token every task watches.

use tokio_util::sync::CancellationToken;

/// Returns a token cancelled on the first SIGTERM/SIGINT; a second signal exits at once.
pub fn on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        for n in 0.. {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
            if n == 0 {
                tracing::info!("shutting down: finishing the clip in flight (signal again to exit now)");
                t.cancel();
            } else {
                tracing::warn!("second signal: exiting without finishing");
                std::process::exit(130);
            }
        }
    });
    token
}
