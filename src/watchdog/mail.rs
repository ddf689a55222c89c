//! Building alert emails and sending them over SMTP (lettre) or into an outbox directory.

use std::time::{Duration, SystemTime};

use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::state::Suppressed;
use crate::config::{SmtpConfig, SmtpTls};
use crate::spool::Sidecar;

/// How a send failed, which decides what happens next.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// 5xx: the server refuses this message or recipient; retrying is bounded.
    #[error("permanent SMTP rejection: {0}")]
    Permanent(String),
    /// 4xx: try again later.
    #[error("temporary SMTP failure: {0}")]
    Transient(String),
    /// Connection, TLS, timeout: the server may be down; retry indefinitely.
    #[error("SMTP server unreachable: {0}")]
    Network(String),
    /// The message could not be built (bad address): retrying cannot help.
    #[error("cannot build the message: {0}")]
    Build(String),
}

impl SendError {
    /// Label for `edgewatch_smtp_errors_total{class}`.
    pub fn class(&self) -> &'static str {
        match self {
            SendError::Permanent(_) => "permanent",
            SendError::Transient(_) => "transient",
            SendError::Network(_) => "network",
            SendError::Build(_) => "build",
        }
    }
}

pub enum Mailer {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// lettre's file transport: one `.eml` per message, for the demo and offline sites.
    Outbox(AsyncFileTransport<Tokio1Executor>),
}

impl Mailer {
    pub fn new(cfg: &SmtpConfig) -> anyhow::Result<Mailer> {
        if cfg.host.is_empty() {
            std::fs::create_dir_all(&cfg.outbox_dir)?;
            return Ok(Mailer::Outbox(AsyncFileTransport::new(&cfg.outbox_dir)));
        }
        let tls_params = || -> anyhow::Result<TlsParameters> {
            let mut b = TlsParameters::builder(cfg.host.clone());
            if let Some(ca) = &cfg.ca_file {
                let pem =
                    std::fs::read(ca).map_err(|e| anyhow::anyhow!("reading smtp.ca-file {}: {e}", ca.display()))?;
                b = b.add_root_certificate(Certificate::from_pem(&pem)?);
            }
            Ok(b.build_rustls()?)
        };
        let (tls, port) = match cfg.tls {
            SmtpTls::Implicit => (Tls::Wrapper(tls_params()?), 465),
            SmtpTls::Starttls => (Tls::Required(tls_params()?), 587),
            SmtpTls::None => (Tls::None, 25),
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(cfg.host.clone())
            .port(cfg.port.unwrap_or(port))
            .tls(tls)
            .timeout(Some(cfg.timeout));
        match (&cfg.username, &cfg.password) {
            (Some(u), Some(p)) => b = b.credentials(Credentials::new(u.clone(), p.expose().to_string())),
            (Some(_), None) => anyhow::bail!("smtp.username is set but no password: set EDGEWATCH_SMTP__PASSWORD_FILE"),
            (None, Some(_)) => anyhow::bail!("smtp.password is set but no smtp.username"),
            (None, None) => {}
        }
        Ok(Mailer::Smtp(b.build()))
    }

    pub async fn send(&self, msg: Message) -> Result<(), SendError> {
        match self {
            Mailer::Smtp(t) => t.send(msg).await.map(|_| ()).map_err(classify),
            Mailer::Outbox(t) => t.send(msg).await.map(|_| ()).map_err(|e| SendError::Network(e.to_string())),
        }
    }

    /// Whether the relay answers (connect, TLS, EHLO, AUTH, NOOP), without a message: while it is
    /// down, a retry then costs a connection attempt instead of reading and encoding a clip. The
    /// connection goes back to the pool for the send that follows.
    pub async fn reachable(&self) -> Result<(), SendError> {
        match self {
            Mailer::Smtp(t) => match t.test_connection().await {
                Ok(true) => Ok(()),
                Ok(false) => Err(SendError::Network("the relay did not answer NOOP".into())),
                Err(e) => Err(classify(e)),
            },
            Mailer::Outbox(_) => Ok(()),
        }
    }
}

fn classify(e: lettre::transport::smtp::Error) -> SendError {
    let text = e.to_string();
    if e.is_permanent() {
        SendError::Permanent(text)
    } else if e.is_transient() {
        SendError::Transient(text)
    } else {
        SendError::Network(text)
    }
}

/// `X-Edgewatch-Event: <event id>` so mail filters and tests can match alerts.
#[derive(Clone)]
struct EventHeader(String);

impl lettre::message::header::Header for EventHeader {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("X-Edgewatch-Event")
    }
    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(EventHeader(s.to_string()))
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// What goes into one alert.
pub struct Alert<'a> {
    pub sidecar: &'a Sidecar,
    pub message_id: &'a str,
    pub clip: Option<Vec<u8>>,
    pub still: Option<Vec<u8>>,
    /// Where the archived clip is (shown always; the only way to the clip when it is too big).
    pub link: Option<String>,
    pub summary: &'a [Suppressed],
}

pub fn subject(template: &str, s: &Sidecar) -> String {
    template
        .replace("{node}", &s.node)
        .replace("{camera}", &s.camera)
        .replace("{time}", &s.event_time.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .replace("{score}", &format!("{:.2}", s.peak_score))
        .replace("{event_id}", &s.event_id)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

pub fn build(cfg: &SmtpConfig, to: &str, a: &Alert<'_>) -> Result<Message, SendError> {
    let s = a.sidecar;
    let from: Mailbox = cfg.from.parse().map_err(|e| SendError::Build(format!("smtp.from `{}`: {e}", cfg.from)))?;
    let to: Mailbox = to.parse().map_err(|e| SendError::Build(format!("recipient `{to}`: {e}")))?;
    let mut lines = vec![
        format!("Event {} on {}/{}", s.event_id, s.node, s.camera),
        format!("Event time:  {}", s.event_time.format("%Y-%m-%d %H:%M:%S%.3f UTC")),
        format!("Peak score:  {:.3} (threshold {:.2})", s.peak_score, s.threshold),
        format!(
            "Clip:        {:.1} s, {} frames, {}x{}, {:.1} MB",
            s.duration,
            s.frames,
            s.width,
            s.height,
            s.clip_bytes as f64 / 1e6
        ),
        format!("Model:       {} ({})", s.model_name, &s.model_sha256[..s.model_sha256.len().min(12)]),
    ];
    match (&a.link, &a.clip) {
        (Some(l), Some(_)) => lines.push(format!("Archived:    {l}")),
        (Some(l), None) => lines.push(format!("The clip is too large to attach; download it here: {l}")),
        (None, Some(_)) => {}
        (None, None) => lines.push("The clip is too large to attach and is not archived yet.".into()),
    }
    if !a.summary.is_empty() {
        lines.push(String::new());
        lines.push(format!("{} earlier event(s) were not emailed (alert rate limit):", a.summary.len()));
        for e in a.summary {
            lines.push(format!(
                "  {}  {}  score {:.2}",
                e.event_time.format("%Y-%m-%d %H:%M:%S UTC"),
                e.event_id,
                e.peak_score
            ));
        }
    }
    let text = lines.join("\n") + "\n";
    let html_lines: String = lines.iter().map(|l| format!("{}<br>\n", html_escape(l))).collect();
    let still_cid = "still";
    let mut alternative = MultiPart::alternative().singlepart(SinglePart::plain(text));
    alternative = match &a.still {
        Some(jpeg) if !jpeg.is_empty() => alternative.multipart(
            MultiPart::related()
                .singlepart(SinglePart::html(format!(
                    "<html><body><p><img src=\"cid:{still_cid}\" alt=\"still of the event\" width=\"640\"></p>\n<p style=\"font-family:monospace\">{html_lines}</p></body></html>"
                )))
                .singlepart(
                    Attachment::new_inline(still_cid.to_string())
                        .body(jpeg.clone(), ContentType::parse("image/jpeg").expect("valid literal")),
                ),
        ),
        _ => alternative.singlepart(SinglePart::html(format!("<html><body><p style=\"font-family:monospace\">{html_lines}</p></body></html>"))),
    };
    let mut mixed = MultiPart::mixed().multipart(alternative);
    if let Some(clip) = &a.clip {
        mixed = mixed.singlepart(
            Attachment::new(s.clip_file.clone())
                .body(clip.clone(), ContentType::parse("video/mp4").expect("valid literal")),
        );
    }
    let date = SystemTime::UNIX_EPOCH + Duration::from_millis(s.event_time.timestamp_millis().max(0) as u64);
    Message::builder()
        .from(from)
        .to(to)
        .subject(subject(&cfg.subject, s))
        .message_id(Some(a.message_id.to_string()))
        .date(date)
        .header(EventHeader(s.event_id.clone()))
        .multipart(mixed)
        .map_err(|e| SendError::Build(e.to_string()))
}
