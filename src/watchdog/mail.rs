//! Building alert emails and sending them over SMTP (lettre) or into an outbox directory.

use std::time::{Duration, SystemTime};

use lettre::address::Envelope;
use lettre::message::header::{ContentTransferEncoding, ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, Body, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, Tls, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
use lettre::{AsyncFileTransport, AsyncTransport, Message, Tokio1Executor};

use super::state::Suppressed;
use crate::config::{SmtpConfig, SmtpTls};
use crate::spool::{EventRecord, Sidecar};
use chrono::{DateTime, Utc};

/// How a send failed, which decides what happens next.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The relay refused our credentials (530, 534, 535) or offers no AUTH mechanism we can
    /// use: a configuration error. The alert stays queued until the configuration is fixed.
    #[error("SMTP authentication failed at {host}: {detail}")]
    Auth { host: String, detail: String },
    /// TLS could not be set up: handshake, an untrusted or expired certificate, a certificate
    /// for another name, no STARTTLS. A configuration error too.
    #[error("TLS with {host} failed: {detail}")]
    Tls { host: String, detail: String },
    /// 4xx: the relay asks to try again later.
    #[error("temporary SMTP failure: {0}")]
    Temporary(Reply),
    /// 5xx for this recipient or message: retried `watch.permanent-attempts` times.
    #[error("permanent SMTP rejection: {0}")]
    Permanent(Reply),
    /// Connection refused or dropped, timeouts: the relay may be down; retry indefinitely.
    #[error("SMTP server unreachable: {0}")]
    Network(String),
    /// The message could not be built (bad address): retrying cannot help.
    #[error("cannot build the message: {0}")]
    Build(String),
}

/// An SMTP reply: its code and text, as the server sent them.
#[derive(Debug, Clone)]
pub struct Reply {
    pub code: Option<u16>,
    pub text: String,
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.code {
            Some(c) => write!(f, "{c} {}", self.text),
            None => f.write_str(&self.text),
        }
    }
}

impl SendError {
    /// Every value of [`SendError::class`].
    pub const CLASSES: [&'static str; 6] = ["auth", "tls", "temporary", "permanent", "network", "build"];

    /// Label for `edgewatch_smtp_errors_total{class}`.
    pub fn class(&self) -> &'static str {
        match self {
            SendError::Auth { .. } => "auth",
            SendError::Tls { .. } => "tls",
            SendError::Temporary(_) => "temporary",
            SendError::Permanent(_) => "permanent",
            SendError::Network(_) => "network",
            SendError::Build(_) => "build",
        }
    }

    /// A configuration error (credentials, TLS): no recipient's verdict, and no retry fixes it
    /// until an operator does.
    pub fn is_config(&self) -> bool {
        matches!(self, SendError::Auth { .. } | SendError::Tls { .. })
    }
}

/// The SMTP step an error came from: the same reply code means different things at each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Connect,
    StartTls,
    Auth,
    Mail,
    Rcpt,
    Data,
}

impl Step {
    fn what(self) -> &'static str {
        match self {
            Step::Connect => "the greeting",
            Step::StartTls => "STARTTLS",
            Step::Auth => "AUTH",
            Step::Mail => "MAIL FROM",
            Step::Rcpt => "RCPT TO",
            Step::Data => "DATA",
        }
    }
}

/// The text of an error and every source below it, each once.
fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        let t = err.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = err.source();
    }
    parts.join(": ")
}

/// What a TLS failure means for an operator, from rustls' wording in the error chain.
fn tls_detail(host: &str, text: &str) -> String {
    if text.contains("NotValidForName") || text.contains("not valid for name") {
        format!("the server's certificate is not valid for the name {host} ({text})")
    } else if text.contains("Expired") || text.contains("expired") {
        format!("the server's certificate has expired ({text})")
    } else if text.contains("UnknownIssuer")
        || text.contains("BadSignature")
        || text.contains("invalid peer certificate")
    {
        format!("the server's certificate is not trusted; set smtp.ca-file to the CA that signed it ({text})")
    } else {
        format!("the handshake failed ({text})")
    }
}

fn classify(e: lettre::transport::smtp::Error, step: Step, host: &str) -> SendError {
    let text = chain_text(&e);
    let reply = || Reply {
        code: e.status().map(|c| c.to_string().parse().unwrap_or_default()),
        text: text.split_once("): ").map_or(text.as_str(), |(_, t)| t).to_string(),
    };
    let code = reply().code;
    let tlsish = e.is_tls() || text.contains("certificate") || text.contains("tls") || text.contains("TLS");
    match step {
        _ if tlsish && !e.is_permanent() && !e.is_transient() => {
            SendError::Tls { host: host.into(), detail: tls_detail(host, &text) }
        }
        Step::StartTls if !e.is_transient() => {
            SendError::Tls { host: host.into(), detail: format!("STARTTLS was refused or is not offered ({text})") }
        }
        // 530 "authentication required" may come at any command after the greeting.
        _ if matches!(code, Some(530 | 534 | 535 | 538)) || (step == Step::Auth && e.is_permanent()) => {
            SendError::Auth { host: host.into(), detail: reply().to_string() }
        }
        Step::Auth if e.is_client() => SendError::Auth { host: host.into(), detail: text },
        _ if e.is_transient() => SendError::Temporary(reply()),
        Step::Connect | Step::StartTls | Step::Auth if e.is_permanent() => {
            SendError::Network(format!("the relay refuses the session at {}: {}", step.what(), reply()))
        }
        _ if e.is_permanent() => SendError::Permanent(reply()),
        _ => SendError::Network(text),
    }
}

pub enum Mailer {
    Smtp(Box<Relay>),
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
        let credentials = match (&cfg.username, &cfg.password) {
            (Some(u), Some(p)) => Some(Credentials::new(u.clone(), p.expose().to_string())),
            (Some(_), None) => anyhow::bail!("smtp.username is set but no password: set EDGEWATCH_SMTP__PASSWORD_FILE"),
            // The pod mounts the SMTP Secret whether or not the relay wants AUTH: a password
            // alone is a leftover, not a login.
            (None, Some(_)) => {
                tracing::warn!("smtp.password is set but smtp.username is not: sending without AUTH");
                None
            }
            (None, None) => None,
        };
        Ok(Mailer::Smtp(Box::new(Relay {
            host: cfg.host.clone(),
            port: cfg.port.unwrap_or(port),
            tls,
            timeout: cfg.timeout,
            credentials,
            hello: ClientId::default(),
            idle: tokio::sync::Mutex::new(None),
        })))
    }

    pub async fn send(&self, msg: Message) -> Result<(), SendError> {
        match self {
            Mailer::Smtp(r) => r.send(&msg).await,
            Mailer::Outbox(t) => t.send(msg).await.map(|_| ()).map_err(|e| SendError::Network(e.to_string())),
        }
    }

    /// Whether the relay answers (connect, TLS, EHLO, AUTH, NOOP), without a message: while it is
    /// down, a retry then costs a connection attempt instead of reading and encoding a clip. The
    /// connection is kept for the send that follows.
    pub async fn reachable(&self) -> Result<(), SendError> {
        match self {
            Mailer::Smtp(r) => {
                let c = r.checkout().await?;
                r.keep(c).await;
                Ok(())
            }
            Mailer::Outbox(_) => Ok(()),
        }
    }
}

/// The SMTP relay, through lettre's connection API rather than its transport, for one reason:
/// the transport dot-stuffs a whole message before writing a byte of it (one byte at a time,
/// about 12 ms for a 4.6 MB alert here, bench/README.md), while `message_iter` over chunks lets
/// the relay take in one chunk while the next is stuffed. The connection is kept between
/// alerts, as lettre's pool did: the watchdog sends one message at a time.
pub struct Relay {
    host: String,
    port: u16,
    tls: Tls,
    timeout: Duration,
    credentials: Option<Credentials>,
    hello: ClientId,
    idle: tokio::sync::Mutex<Option<AsyncSmtpConnection>>,
}

/// Large enough that the per-write cost vanishes, small enough that the relay starts at once.
const DATA_CHUNK: usize = 64 * 1024;

/// `smtp.timeout` bounds each step, as the README promises: lettre's own timeout covers only the
/// TCP connect, and a relay that accepts and then stops answering would hold the watchdog forever.
async fn bounded<T>(
    limit: Duration,
    step: Step,
    host: &str,
    fut: impl std::future::Future<Output = Result<T, lettre::transport::smtp::Error>>,
) -> Result<T, SendError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.map_err(|e| classify(e, step, host)),
        Err(_) => Err(SendError::Network(format!("the relay did not answer {} within {limit:?}", step.what()))),
    }
}

impl Relay {
    /// Connect, TLS as configured (implicit, or STARTTLS required), EHLO, AUTH.
    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let wrapper = match &self.tls {
            Tls::Wrapper(p) => Some(p.clone()),
            _ => None,
        };
        let mut c = bounded(self.timeout, Step::Connect, &self.host, async {
            AsyncSmtpConnection::connect_tokio1(
                (self.host.as_str(), self.port),
                Some(self.timeout),
                &self.hello,
                wrapper,
                None,
            )
            .await
        })
        .await?;
        let setup = async {
            if let Tls::Required(p) = &self.tls {
                bounded(self.timeout, Step::StartTls, &self.host, c.starttls(p.clone(), &self.hello)).await?;
            }
            if let Some(cr) = &self.credentials {
                bounded(self.timeout, Step::Auth, &self.host, c.auth(DEFAULT_MECHANISMS, cr)).await?;
            }
            Ok(())
        }
        .await;
        match setup {
            Ok(()) => Ok(c),
            // A failed TLS upgrade leaves lettre's connection without a stream: a QUIT on it
            // would write to nothing (a debug assertion in lettre). Dropping it closes the socket.
            Err(e @ SendError::Tls { .. }) => Err(e),
            Err(e) => {
                self.discard(c).await;
                Err(e)
            }
        }
    }

    /// The kept connection if it still answers NOOP, else a new one.
    async fn checkout(&self) -> Result<AsyncSmtpConnection, SendError> {
        let kept = self.idle.lock().await.take();
        if let Some(mut c) = kept {
            let alive = !c.has_broken() && tokio::time::timeout(self.timeout, c.test_connected()).await == Ok(true);
            if alive {
                return Ok(c);
            }
            self.discard(c).await;
        }
        self.connect().await
    }

    async fn keep(&self, c: AsyncSmtpConnection) {
        if !c.has_broken() {
            *self.idle.lock().await = Some(c);
        }
    }

    /// QUIT if the relay still answers, then close.
    async fn discard(&self, mut c: AsyncSmtpConnection) {
        let _ = tokio::time::timeout(self.timeout, c.abort()).await;
    }

    async fn send(&self, msg: &Message) -> Result<(), SendError> {
        let mut c = self.checkout().await?;
        match self.transfer(&mut c, msg.envelope(), &msg.formatted()).await {
            Ok(_) => {
                self.keep(c).await;
                Ok(())
            }
            Err(e) => {
                // Whatever the relay saw of this message, the next one starts on a clean session.
                self.discard(c).await;
                Err(e)
            }
        }
    }

    /// MAIL, RCPT, DATA and the message, as lettre's `AsyncSmtpConnection::send` does them, but
    /// with the message written in chunks and every step bounded.
    async fn transfer(
        &self,
        c: &mut AsyncSmtpConnection,
        envelope: &Envelope,
        email: &[u8],
    ) -> Result<Response, SendError> {
        let mut params = vec![];
        let mut addresses = envelope.from().into_iter().chain(envelope.to());
        if addresses.any(|a| !AsRef::<str>::as_ref(a).is_ascii()) {
            if !c.server_info().supports_feature(Extension::SmtpUtfEight) {
                return Err(SendError::Permanent(Reply {
                    code: None,
                    text: "the alert has non-ASCII addresses and the relay does not support SMTPUTF8".into(),
                }));
            }
            params.push(MailParameter::SmtpUtfEight);
        }
        if !email.is_ascii() {
            if !c.server_info().supports_feature(Extension::EightBitMime) {
                return Err(SendError::Permanent(Reply {
                    code: None,
                    text: "the alert is not 7-bit and the relay does not support 8BITMIME".into(),
                }));
            }
            params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        let t = self.timeout;
        let h = &self.host;
        bounded(t, Step::Mail, h, c.command(Mail::new(envelope.from().cloned(), params))).await?;
        for to in envelope.to() {
            bounded(t, Step::Rcpt, h, c.command(Rcpt::new(to.clone(), vec![]))).await?;
        }
        bounded(t, Step::Data, h, c.command(Data)).await?;
        // The message may take as long as it takes on a slow uplink; what is bounded is silence:
        // no chunk taken, or no reply after the last one, for `smtp.timeout`. lettre asks for the
        // next chunk only once the previous one is written, and the empty one at the end marks
        // the last write done.
        let start = std::time::Instant::now();
        let progress = std::sync::atomic::AtomicU64::new(0);
        let mark = || progress.store(start.elapsed().as_millis() as u64, std::sync::atomic::Ordering::Relaxed);
        let chunks = email.chunks(DATA_CHUNK).chain(std::iter::once(&[][..])).inspect(|_| mark());
        let send = c.message_iter(chunks);
        tokio::pin!(send);
        loop {
            tokio::select! {
                r = &mut send => return r.map_err(|e| classify(e, Step::Data, &self.host)),
                _ = tokio::time::sleep(t / 4) => {
                    let last = Duration::from_millis(progress.load(std::sync::atomic::Ordering::Relaxed));
                    if start.elapsed().saturating_sub(last) > t {
                        return Err(SendError::Network(format!("the relay went silent for {t:?} during DATA")));
                    }
                }
            }
        }
    }
}

/// The clip as a base64 MIME body, byte for byte what lettre's own encoder writes (76-column
/// lines joined by CRLF), but SIMD: lettre's took about 9 ms for a 3.3 MB clip. Encoded once
/// per clip, not once per recipient.
pub fn base64_body(bytes: &[u8]) -> Body {
    let flat: Vec<u8> = base64_simd::STANDARD.encode_type(bytes);
    let mut out = Vec::with_capacity(flat.len() + flat.len() / 76 * 2);
    for (i, line) in flat.chunks(76).enumerate() {
        if i > 0 {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(line);
    }
    Body::dangerous_pre_encoded(out, ContentTransferEncoding::Base64)
}

/// `X-Edgewatch-Event: <event id>` and `X-Edgewatch-Alert: snapshot|clip|no-clip`, so mail
/// filters and tests can match alerts.
#[derive(Clone)]
struct XHeader<const ALERT: bool>(String);

impl XHeader<false> {
    fn event(id: &str) -> Self {
        XHeader(id.to_string())
    }
}

impl XHeader<true> {
    fn alert(kind: &str) -> Self {
        XHeader(kind.to_string())
    }
}

impl<const ALERT: bool> lettre::message::header::Header for XHeader<ALERT> {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str(if ALERT { "X-Edgewatch-Alert" } else { "X-Edgewatch-Event" })
    }
    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(XHeader(s.to_string()))
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// The clip email of one event.
pub struct Alert<'a> {
    pub sidecar: &'a Sidecar,
    pub message_id: &'a str,
    /// The clip, already encoded ([`base64_body`]).
    pub clip: Option<Body>,
    pub still: Option<Vec<u8>>,
    /// Where the archived clip is (shown always; the only way to the clip when it is too big).
    pub link: Option<String>,
    pub summary: &'a [Suppressed],
    /// The first alert this email follows (its Message-ID and subject), to thread under it.
    pub reply_to: Option<(&'a str, String)>,
}

/// What a subject template can name.
pub struct SubjectFields<'a> {
    pub node: &'a str,
    pub camera: &'a str,
    pub event_id: &'a str,
    pub time: DateTime<Utc>,
    pub score: f32,
}

impl<'a> From<&'a EventRecord> for SubjectFields<'a> {
    fn from(r: &'a EventRecord) -> Self {
        SubjectFields { node: &r.node, camera: &r.camera, event_id: &r.event_id, time: r.event_time, score: r.score }
    }
}

impl<'a> From<&'a Sidecar> for SubjectFields<'a> {
    fn from(s: &'a Sidecar) -> Self {
        SubjectFields {
            node: &s.node,
            camera: &s.camera,
            event_id: &s.event_id,
            time: s.event_time,
            score: s.peak_score,
        }
    }
}

pub fn subject(template: &str, f: &SubjectFields<'_>) -> String {
    template
        .replace("{node}", f.node)
        .replace("{camera}", f.camera)
        .replace("{time}", &f.time.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .replace("{score}", &format!("{:.2}", f.score))
        .replace("{event_id}", f.event_id)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn summary_lines(summary: &[Suppressed], lines: &mut Vec<String>) {
    if summary.is_empty() {
        return;
    }
    lines.push(String::new());
    lines.push(format!("{} earlier event(s) were not emailed (alert rate limit):", summary.len()));
    for e in summary {
        lines.push(format!(
            "  {}  {}  score {:.2}",
            e.event_time.format("%Y-%m-%d %H:%M:%S UTC"),
            e.event_id,
            e.peak_score
        ));
    }
}

fn model_line(name: &str, sha256: &str) -> String {
    format!("Model:       {name} ({})", &sha256[..sha256.len().min(12)])
}

/// The first alert: sent as soon as the event is decided, with the still inline.
pub fn first(
    cfg: &SmtpConfig,
    to: &str,
    r: &EventRecord,
    message_id: &str,
    still: Option<&[u8]>,
    summary: &[Suppressed],
) -> Result<Message, SendError> {
    let mut lines = vec![
        format!("Event {} on {}/{}", r.event_id, r.node, r.camera),
        format!("Event time:  {}", r.event_time.format("%Y-%m-%d %H:%M:%S%.3f UTC")),
        format!("Score:       {:.3} at the decision (threshold {:.2})", r.score, r.threshold),
        model_line(&r.model_name, &r.model_sha256),
        String::new(),
        "The clip follows in a reply to this email once it is written.".into(),
    ];
    summary_lines(summary, &mut lines);
    let m = Compose {
        subject: subject(&cfg.subject, &r.into()),
        message_id,
        reply_to: None,
        event_id: &r.event_id,
        time: r.event_time,
        kind: "snapshot",
        lines,
        still,
        clip: None,
    };
    m.build(cfg, to)
}

/// The clip email (the only one with `alert.first = "none"`).
pub fn build(cfg: &SmtpConfig, to: &str, a: &Alert<'_>) -> Result<Message, SendError> {
    let s = a.sidecar;
    let mut lines = vec![
        format!("Event {} on {}/{}", s.event_id, s.node, s.camera),
        format!("Event time:  {}", s.event_time.format("%Y-%m-%d %H:%M:%S%.3f UTC")),
        format!("Peak score:  {:.3} (threshold {:.2})", s.peak_score, s.threshold),
    ];
    if let Some(why) = &s.clip_missing {
        lines.push(format!("No clip:     {why}"));
    } else {
        lines.push(format!(
            "Clip:        {:.1} s, {} frames, {}x{}, {:.1} MB",
            s.duration,
            s.frames,
            s.width,
            s.height,
            s.clip_bytes as f64 / 1e6
        ));
        if s.recovered {
            lines.push("             recovered after the detector restarted: it ends where capture stopped".into());
        }
    }
    lines.push(model_line(&s.model_name, &s.model_sha256));
    match (&a.link, &a.clip, &s.clip_missing) {
        (_, _, Some(_)) => {}
        (Some(l), Some(_), None) => lines.push(format!("Archived:    {l}")),
        (Some(l), None, None) => lines.push(format!("The clip is too large to attach; download it here: {l}")),
        (None, Some(_), None) => {}
        (None, None, None) => {
            lines.push("The clip is too large to attach, and there is no archive link for it.".into())
        }
    }
    summary_lines(a.summary, &mut lines);
    let m = Compose {
        subject: match &a.reply_to {
            Some((_, first)) => format!("Re: {first}"),
            None => subject(&cfg.subject, &s.into()),
        },
        message_id: a.message_id,
        reply_to: a.reply_to.as_ref().map(|(id, _)| *id),
        event_id: &s.event_id,
        time: s.event_time,
        kind: if s.clip_missing.is_some() { "no-clip" } else { "clip" },
        lines,
        still: a.still.as_deref(),
        clip: a.clip.as_ref().map(|c| (s.clip_file.as_str(), c)),
    };
    m.build(cfg, to)
}

/// One alert email: text and HTML bodies, the still inline, the clip attached.
struct Compose<'a> {
    subject: String,
    message_id: &'a str,
    /// The Message-ID this email replies to (In-Reply-To and References).
    reply_to: Option<&'a str>,
    event_id: &'a str,
    time: DateTime<Utc>,
    /// `X-Edgewatch-Alert`: snapshot, clip or no-clip.
    kind: &'static str,
    lines: Vec<String>,
    still: Option<&'a [u8]>,
    clip: Option<(&'a str, &'a Body)>,
}

impl Compose<'_> {
    fn build(self, cfg: &SmtpConfig, to: &str) -> Result<Message, SendError> {
        let from: Mailbox = cfg.from.parse().map_err(|e| SendError::Build(format!("smtp.from `{}`: {e}", cfg.from)))?;
        let to: Mailbox = to.parse().map_err(|e| SendError::Build(format!("recipient `{to}`: {e}")))?;
        let text = self.lines.join("\n") + "\n";
        let html_lines: String = self.lines.iter().map(|l| format!("{}<br>\n", html_escape(l))).collect();
        let still_cid = "still";
        let mut alternative = MultiPart::alternative().singlepart(SinglePart::plain(text));
        alternative = match self.still {
            Some(jpeg) if !jpeg.is_empty() => alternative.multipart(
                MultiPart::related()
                    .singlepart(SinglePart::html(format!(
                        "<html><body><p><img src=\"cid:{still_cid}\" alt=\"still of the event\" width=\"640\"></p>\n<p style=\"font-family:monospace\">{html_lines}</p></body></html>"
                    )))
                    .singlepart(
                        Attachment::new_inline(still_cid.to_string())
                            .body(jpeg.to_vec(), ContentType::parse("image/jpeg").expect("valid literal")),
                    ),
            ),
            _ => alternative.singlepart(SinglePart::html(format!(
                "<html><body><p style=\"font-family:monospace\">{html_lines}</p></body></html>"
            ))),
        };
        let mut mixed = MultiPart::mixed().multipart(alternative);
        if let Some((name, clip)) = self.clip {
            mixed = mixed.singlepart(
                Attachment::new(name.to_string())
                    .body(clip.clone(), ContentType::parse("video/mp4").expect("valid literal")),
            );
        }
        let date = SystemTime::UNIX_EPOCH + Duration::from_millis(self.time.timestamp_millis().max(0) as u64);
        let mut b = Message::builder()
            .from(from)
            .to(to)
            .subject(self.subject)
            .message_id(Some(self.message_id.to_string()))
            .date(date)
            .header(XHeader::event(self.event_id))
            .header(XHeader::alert(self.kind));
        if let Some(parent) = self.reply_to {
            b = b.in_reply_to(parent.to_string()).references(parent.to_string());
        }
        b.multipart(mixed).map_err(|e| SendError::Build(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_body_is_byte_for_byte_lettres_encoding() {
        // Every length around the 57-byte line boundary and the 3-byte group, then a clip-sized
        // buffer: the encoded attachment must be what lettre itself would have written.
        let data: Vec<u8> = (0..700_001u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for len in (0..=200).chain([56_999, 57_000, 57_001, 700_001]) {
            let ours = base64_body(&data[..len]);
            let lettres = Body::new_with_encoding(data[..len].to_vec(), ContentTransferEncoding::Base64)
                .expect("base64 takes any bytes");
            assert_eq!(ours.encoding(), ContentTransferEncoding::Base64);
            assert!(ours.as_ref() == lettres.as_ref(), "length {len}: encodings differ");
        }
    }
}
