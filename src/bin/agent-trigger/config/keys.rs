//! `[[keys]]`: the API keys, by digest or read from the environment, each with its tenant and
//! the triggers it may use.

use std::collections::HashSet;

use agent_trigger::{ApiKeyRecord, KeyDigest, KeyScope, Right, Trigger};

use super::file::RawKey;
use super::locate::{ConfigError, Locator};
use super::triggers::parse_uuid;

/// The keys, checked against the `triggers` they name.
pub fn check(
    locate: &Locator<'_>,
    raw: &[RawKey],
    triggers: &[Trigger],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(KeyDigest, ApiKeyRecord)>, ConfigError> {
    let mut ids = HashSet::new();
    let mut digests = HashSet::new();
    let mut keys = Vec::with_capacity(raw.len());
    for entry in raw {
        let id = locate.non_empty(&entry.id, "key id")?;
        if !ids.insert(id.clone()) {
            return Err(locate.at(&entry.id, format!("key id {id:?} appears twice")));
        }
        let tenant = locate.non_empty(&entry.tenant, "tenant")?;
        let digest = match (&entry.sha256, &entry.env) {
            (Some(hex), None) => KeyDigest::from_hex(hex.get_ref())
                .map_err(|error| locate.at(hex, error.to_string()))?,
            (None, Some(name)) => {
                let key = locate.variable(name, env)?;
                KeyDigest::of_token(&key)
            }
            _ => {
                return Err(locate.at(
                    &entry.id,
                    "a key needs exactly one of `sha256` or `env`".to_owned(),
                ));
            }
        };
        if !digests.insert(digest) {
            return Err(locate.at(
                &entry.id,
                "this key is the same as an earlier one".to_owned(),
            ));
        }
        let mut record = ApiKeyRecord::new(id, tenant.clone());
        if let Some(list) = &entry.triggers {
            if list.get_ref().iter().any(|entry| entry == "*") {
                if list.get_ref().len() > 1 {
                    return Err(locate.at(
                        list,
                        "\"*\" already means all of the tenant's triggers".to_owned(),
                    ));
                }
            } else {
                let mut scope = Vec::new();
                for text in list.get_ref() {
                    let trigger_id = parse_uuid(text).ok_or_else(|| {
                        locate.at(
                            list,
                            format!("{text:?} is not a trigger id (a hyphenated UUID) or \"*\""),
                        )
                    })?;
                    if !triggers
                        .iter()
                        .any(|trigger| trigger.id() == trigger_id && trigger.tenant() == tenant)
                    {
                        return Err(locate.at(
                            list,
                            format!(
                                "trigger {trigger_id} is not one of tenant {tenant:?}'s triggers"
                            ),
                        ));
                    }
                    scope.push(trigger_id);
                }
                record = record.with_scope(KeyScope::Triggers(scope));
            }
        }
        if let Some(rights) = &entry.can {
            let mut granted = Vec::new();
            for name in rights.get_ref() {
                let right: Right = name.parse().map_err(|_| {
                    locate.at(
                        rights,
                        format!("can: {name:?} is not one of \"invoke\", \"read\", \"operate\""),
                    )
                })?;
                granted.push(right);
            }
            if granted.is_empty() {
                return Err(locate.at(
                    rights,
                    "can must name at least one of \"invoke\", \"read\", \"operate\"".to_owned(),
                ));
            }
            record = record.with_rights(granted);
        }
        keys.push((digest, record));
    }
    Ok(keys)
}
