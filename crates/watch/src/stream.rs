//! A reader for captured or live Marathon event streams, so `curl -N -H 'Accept:
//! text/event-stream' $MARATHON_URL/v2/events | tasks2consul --events` and replays of a saved
//! capture work the same way.
//!
//! Two framings are accepted, line by line, mixed freely:
//! - Server-Sent Events as Marathon's Jetty servlet writes them: `event: <type>\r\n`,
//!   `data: <json>\r\n`, a blank line ending the frame, bare `\r\n` heartbeats every 10 s and
//!   `:` comment lines (shared/reference/marathon-chronos-and-registrars.md §2.1; the WHATWG SSE
//!   rules for multi-line `data:`);
//! - newline-delimited JSON: a line that starts with `{` outside an SSE frame is one event, typed
//!   by its `eventType` field.

use std::io::BufRead;

use serde_json::Value;

/// One event from the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEvent {
    /// The SSE `event:` name, or the JSON's `eventType` (NDJSON, or SSE without `event:`).
    pub event_type: String,
    pub data: Value,
    /// The line number (1-based) where the event ended, for error messages and logs.
    pub line: usize,
}

/// A frame that could not be decoded; the reader goes on with the next one.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("event stream line {line}: data is not valid JSON: {reason}")]
    BadData { line: usize, reason: String },
    #[error("event stream: read failed after line {line}: {source}")]
    Io {
        line: usize,
        #[source]
        source: std::io::Error,
    },
}

/// Iterator over the events of a stream. Ends at EOF (or after an I/O error).
pub struct EventStream<R> {
    reader: R,
    line_no: usize,
    event: Option<String>,
    data: Vec<String>,
    done: bool,
}

impl<R: BufRead> EventStream<R> {
    pub fn new(reader: R) -> Self {
        EventStream {
            reader,
            line_no: 0,
            event: None,
            data: Vec::new(),
            done: false,
        }
    }

    /// Lines read so far.
    pub fn line(&self) -> usize {
        self.line_no
    }

    fn finish_frame(&mut self) -> Option<Result<StreamEvent, StreamError>> {
        let event = self.event.take();
        if self.data.is_empty() {
            // A heartbeat, or an `event:` line without data: nothing to dispatch (WHATWG SSE).
            return None;
        }
        let raw = std::mem::take(&mut self.data).join("\n");
        Some(self.to_event(event, &raw))
    }

    fn to_event(&self, event: Option<String>, raw: &str) -> Result<StreamEvent, StreamError> {
        let data: Value = serde_json::from_str(raw).map_err(|e| StreamError::BadData {
            line: self.line_no,
            reason: e.to_string(),
        })?;
        let event_type = event
            .filter(|e| !e.is_empty())
            .or_else(|| {
                data.get("eventType")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "message".to_string());
        Ok(StreamEvent {
            event_type,
            data,
            line: self.line_no,
        })
    }
}

impl<R: BufRead> Iterator for EventStream<R> {
    type Item = Result<StreamEvent, StreamError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            let mut buf = Vec::new();
            match self.reader.read_until(b'\n', &mut buf) {
                Ok(0) => {
                    self.done = true;
                    return self.finish_frame();
                }
                Ok(_) => {}
                Err(e) => {
                    self.done = true;
                    return Some(Err(StreamError::Io {
                        line: self.line_no,
                        source: e,
                    }));
                }
            }
            self.line_no += 1;
            let text = String::from_utf8_lossy(&buf);
            let line = text.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if let Some(ev) = self.finish_frame() {
                    return Some(ev);
                }
                continue;
            }
            if line.starts_with(':') {
                continue; // SSE comment
            }
            if self.event.is_none() && self.data.is_empty() && line.trim_start().starts_with('{') {
                return Some(self.to_event(None, line));
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            match field {
                "event" => self.event = Some(value.to_string()),
                "data" => self.data.push(value.to_string()),
                _ => {} // id:, retry: and unknown fields are ignored (WHATWG SSE)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(input: &str) -> Vec<Result<StreamEvent, StreamError>> {
        EventStream::new(input.as_bytes()).collect()
    }

    #[test]
    fn sse_with_crlf_and_heartbeats() {
        let input = "event: event_stream_attached\r\ndata: {\"remoteAddress\":\"1.2.3.4\",\"eventType\":\"event_stream_attached\"}\r\n\r\n\r\n\r\nevent: status_update_event\r\ndata: {\"taskId\":\"a.1\",\"taskStatus\":\"TASK_RUNNING\"}\r\n\r\n";
        let evs: Vec<_> = events(input).into_iter().map(Result::unwrap).collect();
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].event_type, "event_stream_attached");
        assert_eq!(evs[1].event_type, "status_update_event");
        assert_eq!(evs[1].data["taskStatus"], "TASK_RUNNING");
    }

    #[test]
    fn ndjson_lines_are_events() {
        let input = "{\"eventType\":\"status_update_event\",\"taskId\":\"x\"}\n{\"eventType\":\"health_status_changed_event\"}\n";
        let evs: Vec<_> = events(input).into_iter().map(Result::unwrap).collect();
        assert_eq!(evs[0].event_type, "status_update_event");
        assert_eq!(evs[1].event_type, "health_status_changed_event");
    }

    #[test]
    fn bad_frame_is_reported_and_reading_continues() {
        let input = "event: x\ndata: {broken\n\nevent: y\ndata: {}\n\n";
        let evs = events(input);
        assert!(matches!(evs[0], Err(StreamError::BadData { line: 3, .. })));
        assert_eq!(evs[1].as_ref().unwrap().event_type, "y");
    }

    #[test]
    fn frame_without_trailing_blank_line_is_delivered_at_eof() {
        let evs = events("event: z\ndata: {\"a\":1}");
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].as_ref().unwrap().data["a"], 1);
    }

    #[test]
    fn multi_line_data_is_joined() {
        let evs = events("data: {\"a\":\ndata: 2}\n\n");
        assert_eq!(evs[0].as_ref().unwrap().data["a"], 2);
        assert_eq!(evs[0].as_ref().unwrap().event_type, "message");
    }
}
