//! CAP 1.2 messages as sources send them (one `info`, one `area`), for the tests and
//! the checker.

use chrono::{DateTime, SecondsFormat, Utc};

pub struct CapMessage<'a> {
    pub identifier: &'a str,
    pub sender: &'a str,
    /// `Alert`, `Update` or `Cancel`.
    pub msg_type: &'a str,
    /// `sender,identifier,sent` of the messages a Cancel or Update refers to.
    pub references: Option<&'a str>,
    pub sent: DateTime<Utc>,
    pub expires: DateTime<Utc>,
    pub area: &'a str,
}

impl<'a> CapMessage<'a> {
    /// An Alert for `area`, sent now.
    pub fn alert(
        identifier: &'a str,
        sender: &'a str,
        area: &'a str,
        expires: DateTime<Utc>,
    ) -> Self {
        CapMessage {
            identifier,
            sender,
            msg_type: "Alert",
            references: None,
            sent: Utc::now(),
            expires,
            area,
        }
    }

    pub fn to_xml(&self) -> String {
        let time = |t: &DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
        let references = self
            .references
            .map(|r| format!("\n  <references>{r}</references>"))
            .unwrap_or_default();
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>{identifier}</identifier>
  <sender>{sender}</sender>
  <sent>{sent}</sent>
  <status>Actual</status>
  <msgType>{msg_type}</msgType>
  <scope>Public</scope>{references}
  <info>
    <category>Safety</category>
    <event>Rocket Alert</event>
    <urgency>Immediate</urgency>
    <severity>Extreme</severity>
    <certainty>Observed</certainty>
    <expires>{expires}</expires>
    <area><areaDesc>{area}</areaDesc></area>
  </info>
</alert>"#,
            identifier = self.identifier,
            sender = self.sender,
            sent = time(&self.sent),
            msg_type = self.msg_type,
            expires = time(&self.expires),
            area = self.area,
        )
    }
}
