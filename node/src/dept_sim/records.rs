//! The simulated records of one source: the key map, the change feed ordered by `seq`, the
//! person index, and the pages they give.

use super::*;
use server::Refusal;

/// A record's raw payload as the department system delivers it (the shape `crate::synth` uses).
pub(super) fn raw_payload(source_id: &str, fields: &BTreeMap<String, String>) -> String {
    serde_json::json!({ "source": source_id, "data": fields }).to_string()
}

/// One current record.
pub(super) struct Entry {
    /// The resident it was generated for.
    pub(super) index: u64,
    pub(super) seq: u64,
    pub(super) person: Option<String>,
    pub(super) payload: String,
    pub(super) payload_hash: [u8; 32],
}

/// The records of one source: key map, change feed and person index, always in agreement.
#[derive(Default)]
pub(super) struct Records {
    pub(super) by_key: BTreeMap<String, Entry>,
    /// seq -> key, for every current record.
    pub(super) feed: BTreeMap<u64, String>,
    pub(super) by_person: HashMap<String, BTreeSet<String>>,
    pub(super) last_seq: u64,
}

/// Borrowed [`PageRecord`], serialized under the source's lock without copying payloads.
#[derive(Serialize)]
pub(super) struct PageRecordRef<'a> {
    pub(super) key: &'a str,
    pub(super) seq: u64,
    pub(super) person: Option<&'a str>,
    pub(super) payload: &'a str,
}

#[derive(Serialize)]
pub(super) struct PageRef<'a> {
    pub(super) records: &'a [PageRecordRef<'a>],
    pub(super) next: u64,
    pub(super) more: bool,
}

impl Records {
    /// Records of residents `0..count` (`synth` gives each a distinct record key).
    pub(super) fn generate(source: &DataSource, count: u64, seed: u64) -> Records {
        let mut generator = Generator::new(seed);
        let mut records = Records::default();
        let key_field = &source.record_key_field;
        for index in 0..count {
            let record = generator.record_for(source, index);
            let key = record.fields.get(key_field).cloned().unwrap_or_default();
            let payload = String::from_utf8(record.raw)
                .expect("invariant: synthetic payloads are serde_json text");
            assert!(
                !records.by_key.contains_key(&key),
                "invariant: synthetic record keys are distinct per resident"
            );
            let person = source
                .person_field
                .as_ref()
                .and_then(|p| record.fields.get(p))
                .filter(|p| !p.is_empty())
                .cloned();
            records.insert(key, index, person, payload);
        }
        records
    }

    /// Adds a new record with the next `seq`.
    pub(super) fn insert(
        &mut self,
        key: String,
        index: u64,
        person: Option<String>,
        payload: String,
    ) {
        self.last_seq += 1;
        let seq = self.last_seq;
        if let Some(p) = &person {
            self.by_person
                .entry(p.clone())
                .or_default()
                .insert(key.clone());
        }
        self.feed.insert(seq, key.clone());
        let payload_hash = payload_hash(payload.as_bytes());
        let entry = Entry {
            index,
            seq,
            person,
            payload,
            payload_hash,
        };
        let previous = self.by_key.insert(key, entry);
        assert!(previous.is_none(), "invariant: record keys are unique");
        debug_assert_eq!(self.feed.len(), self.by_key.len());
    }

    /// Gives record `key` new content (same key, same person) and the next `seq`.
    pub(super) fn touch(
        &mut self,
        source: &DataSource,
        key: &str,
        seed: u64,
    ) -> Option<(u64, String)> {
        let seq = self.last_seq + 1;
        let entry = self.by_key.get_mut(key)?;
        let resident = synth::person(seed, entry.index);
        let unique = format!("{:012}", entry.index);
        let (fields, payload) = (0..MAX_TOUCH_ATTEMPTS).find_map(|attempt| {
            let rng_seed = seed ^ seq ^ attempt.wrapping_mul(SEED_SPREAD);
            let mut rng = ChaCha8Rng::seed_from_u64(rng_seed);
            let mut fields = synth::record(&mut rng, source, &resident, &unique).fields;
            fields.insert(source.record_key_field.clone(), key.to_string());
            if let Some(person_field) = &source.person_field {
                match &entry.person {
                    Some(p) => fields.insert(person_field.clone(), p.clone()),
                    None => fields.remove(person_field),
                };
            }
            let payload = raw_payload(&source.id, &fields);
            (payload != entry.payload).then_some((fields, payload))
        })?;
        debug_assert!(
            govchain_chaincode::records::Record {
                fields,
                raw: payload.clone().into_bytes(),
            }
            .validate(source)
            .is_ok(),
            "a touched record validates against its source"
        );
        let old_seq = std::mem::replace(&mut entry.seq, seq);
        entry.payload_hash = payload_hash(payload.as_bytes());
        entry.payload.clone_from(&payload);
        let moved = self.feed.remove(&old_seq);
        assert_eq!(
            moved.as_deref(),
            Some(key),
            "invariant: feed and keys agree"
        );
        self.feed.insert(seq, key.to_string());
        self.last_seq = seq;
        Some((seq, payload))
    }

    /// Sets field `field` of record `key` to `value` as delivered — whether or not the result
    /// is valid for the source (a department system's bad data, for tests of refusals) — and
    /// gives it the next `seq`. Refused for the record key and person fields (the key map and
    /// the person index stay as they are).
    pub(super) fn set_field(
        &mut self,
        source: &DataSource,
        key: &str,
        field: &str,
        value: &str,
    ) -> Result<(u64, String), Refusal> {
        if field == source.record_key_field || source.person_field.as_deref() == Some(field) {
            return Err(Refusal::BadQuery(
                "the record key and person fields cannot be set",
            ));
        }
        let seq = self.last_seq + 1;
        let entry = self.by_key.get_mut(key).ok_or(Refusal::UnknownRecord)?;
        let mut payload: serde_json::Value = serde_json::from_str(&entry.payload)
            .expect("invariant: the simulator's payloads are JSON objects");
        payload["data"][field] = serde_json::Value::String(value.to_string());
        let payload = payload.to_string();
        let old_seq = std::mem::replace(&mut entry.seq, seq);
        entry.payload_hash = payload_hash(payload.as_bytes());
        entry.payload.clone_from(&payload);
        let moved = self.feed.remove(&old_seq);
        assert_eq!(
            moved.as_deref(),
            Some(key),
            "invariant: feed and keys agree"
        );
        self.feed.insert(seq, key.to_string());
        self.last_seq = seq;
        Ok((seq, payload))
    }

    pub(super) fn page_record<'a>(&'a self, key: &'a str) -> PageRecordRef<'a> {
        let entry = self
            .by_key
            .get(key)
            .expect("invariant: the feed and the person index name current records only");
        PageRecordRef {
            key,
            seq: entry.seq,
            person: entry.person.as_deref(),
            payload: &entry.payload,
        }
    }

    /// The feed page of records with `seq > since`, at most `limit`, as JSON.
    pub(super) fn feed_page(&self, since: u64, limit: usize) -> Vec<u8> {
        let mut after = self.feed.range((Bound::Excluded(since), Bound::Unbounded));
        let records: Vec<PageRecordRef<'_>> = after
            .by_ref()
            .take(limit)
            .map(|(_, key)| self.page_record(key))
            .collect();
        let more = after.next().is_some();
        let next = records.last().map_or(since, |r| r.seq);
        page_json(&records, next, more)
    }

    /// Every current record of person `pid`, in `seq` order, as JSON.
    pub(super) fn person_page(&self, pid: &str) -> Vec<u8> {
        let mut records: Vec<PageRecordRef<'_>> = self
            .by_person
            .get(pid)
            .into_iter()
            .flatten()
            .map(|key| self.page_record(key))
            .collect();
        records.sort_unstable_by_key(|r| r.seq);
        let next = records.last().map_or(0, |r| r.seq);
        page_json(&records, next, false)
    }

    pub(super) fn digest(&self) -> (u64, String) {
        digest_sorted(
            self.by_key
                .iter()
                .map(|(key, e)| (key.as_str(), &e.payload_hash)),
        )
    }
}

pub(super) fn page_json(records: &[PageRecordRef<'_>], next: u64, more: bool) -> Vec<u8> {
    serde_json::to_vec(&PageRef {
        records,
        next,
        more,
    })
    .expect("invariant: a page of strings and numbers serializes")
}
