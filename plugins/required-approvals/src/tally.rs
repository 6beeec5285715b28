//! Counting which approvals of a promotion count towards the required number.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

/// A runledger role, ordered from least to most privileged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Also creates and changes runs and models.
    Editor,
    /// Also approves promotions.
    Approver,
    /// Also manages users, tokens and plugins.
    Admin,
}

impl Role {
    /// Parses a role name as the host sends it, such as `approver`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "viewer" => Some(Self::Viewer),
            "editor" => Some(Self::Editor),
            "approver" => Some(Self::Approver),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }

    /// Returns the role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Editor => "editor",
            Self::Approver => "approver",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The users whose approvals never count, and the lowest role that counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules<'a> {
    /// The user who requested the promotion.
    pub requester: &'a str,
    /// The user who started the run behind the version.
    pub author: &'a str,
    /// The lowest role that counts.
    pub role: Role,
}

/// The approvals sorted into those that count and those that do not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    /// Distinct approvers that count, in the order they approved.
    pub counted: Vec<String>,
    /// Approvers that do not count, by name, with the reason.
    pub excluded: BTreeMap<String, String>,
}

impl Tally {
    /// Sorts `(approver, role)` pairs, oldest first. An approver counts once, however often
    /// they appear, and appears under `excluded` only when none of their approvals counts.
    pub fn of<'a>(approvals: impl IntoIterator<Item = (&'a str, &'a str)>, rules: &Rules) -> Self {
        let mut tally = Self::default();
        for (approver, role) in approvals {
            if tally.counted.iter().any(|name| name == approver) {
                continue;
            }
            match exclusion(approver, role, rules) {
                Some(reason) => {
                    tally.excluded.insert(approver.to_owned(), reason);
                }
                None => {
                    tally.excluded.remove(approver);
                    tally.counted.push(approver.to_owned());
                }
            }
        }
        tally
    }
}

/// Returns why an approval by `approver` holding `role` does not count, if it does not.
fn exclusion(approver: &str, role: &str, rules: &Rules) -> Option<String> {
    let is_requester = approver == rules.requester;
    let is_author = approver == rules.author;
    match (is_requester, is_author) {
        (true, true) => return Some("requested the promotion and authored the run".into()),
        (true, false) => return Some("requested the promotion".into()),
        (false, true) => return Some("authored the run".into()),
        (false, false) => {}
    }
    match Role::parse(role) {
        None => Some(format!("holds the unknown role `{role}`")),
        Some(held) if held < rules.role => Some(format!(
            "holds role {held}, below the required {}",
            rules.role
        )),
        Some(_) => None,
    }
}

/// The policy's verdict on a tally.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Enough approvals count.
    Allow,
    /// `missing` more approvals are needed, for the reason given.
    Pending {
        /// How many more approvals are needed; at least 1.
        missing: u32,
        /// The approvers that count, those that do not, and why.
        reason: String,
    },
}

/// Judges `tally` against the required `count`.
pub fn verdict(tally: &Tally, count: u32, rules: &Rules) -> Verdict {
    let counted = u32::try_from(tally.counted.len()).unwrap_or(u32::MAX);
    if counted >= count {
        return Verdict::Allow;
    }
    let missing = count - counted;
    Verdict::Pending {
        missing,
        reason: pending_reason(tally, count, missing, rules),
    }
}

fn pending_reason(tally: &Tally, count: u32, missing: u32, rules: &Rules) -> String {
    let mut reason = format!(
        "{missing} more {} needed: {count} required from distinct users with role {} or higher \
         other than the requester `{}` and the run's author `{}`",
        noun_for(missing, "approval", "approvals"),
        rules.role,
        rules.requester,
        rules.author,
    );

    if tally.counted.is_empty() {
        reason.push_str("; none counts yet");
    } else {
        let mut names = tally.counted.clone();
        names.sort();
        let names: Vec<String> = names.iter().map(|name| format!("`{name}`")).collect();
        reason.push_str(&format!("; counted: {}", names.join(", ")));
    }

    if !tally.excluded.is_empty() {
        let excluded: Vec<String> = tally
            .excluded
            .iter()
            .map(|(name, why)| format!("`{name}` ({why})"))
            .collect();
        reason.push_str(&format!("; not counted: {}", excluded.join(", ")));
    }
    reason
}

fn noun_for<'a>(count: u32, singular: &'a str, plural: &'a str) -> &'a str {
    if count == 1 { singular } else { plural }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: Rules<'static> = Rules {
        requester: "alice",
        author: "bob",
        role: Role::Approver,
    };

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Viewer < Role::Editor);
        assert!(Role::Editor < Role::Approver);
        assert!(Role::Approver < Role::Admin);
        for role in [Role::Viewer, Role::Editor, Role::Approver, Role::Admin] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("Admin"), None);
    }

    #[test]
    fn two_distinct_approvers_allow() {
        let tally = Tally::of([("carol", "approver"), ("dave", "admin")], &RULES);
        assert_eq!(tally.counted, ["carol", "dave"]);
        assert!(tally.excluded.is_empty());
        assert_eq!(verdict(&tally, 2, &RULES), Verdict::Allow);
    }

    #[test]
    fn requester_and_author_do_not_count() {
        let approvals = [
            ("alice", "admin"),
            ("bob", "approver"),
            ("carol", "approver"),
        ];
        let tally = Tally::of(approvals, &RULES);
        assert_eq!(tally.counted, ["carol"]);
        assert_eq!(tally.excluded["alice"], "requested the promotion");
        assert_eq!(tally.excluded["bob"], "authored the run");

        let Verdict::Pending { missing, reason } = verdict(&tally, 2, &RULES) else {
            panic!("expected pending");
        };
        assert_eq!(missing, 1);
        assert_eq!(
            reason,
            "1 more approval needed: 2 required from distinct users with role approver or \
             higher other than the requester `alice` and the run's author `bob`; counted: \
             `carol`; not counted: `alice` (requested the promotion), `bob` (authored the run)"
        );
    }

    #[test]
    fn requester_who_authored_the_run() {
        let rules = Rules {
            requester: "alice",
            author: "alice",
            role: Role::Approver,
        };
        let tally = Tally::of([("alice", "admin")], &rules);
        assert_eq!(
            tally.excluded["alice"],
            "requested the promotion and authored the run"
        );
    }

    #[test]
    fn duplicate_approver_counts_once() {
        let tally = Tally::of([("carol", "approver"), ("carol", "admin")], &RULES);
        assert_eq!(tally.counted, ["carol"]);

        let Verdict::Pending { missing, reason } = verdict(&tally, 2, &RULES) else {
            panic!("expected pending");
        };
        assert_eq!(missing, 1);
        assert!(reason.ends_with("; counted: `carol`"), "{reason}");
    }

    #[test]
    fn low_and_unknown_roles_do_not_count() {
        let tally = Tally::of(
            [("dave", "viewer"), ("erin", "editor"), ("frank", "owner")],
            &RULES,
        );
        assert!(tally.counted.is_empty());
        assert_eq!(
            tally.excluded["dave"],
            "holds role viewer, below the required approver"
        );
        assert_eq!(
            tally.excluded["erin"],
            "holds role editor, below the required approver"
        );
        assert_eq!(tally.excluded["frank"], "holds the unknown role `owner`");

        let Verdict::Pending { missing, reason } = verdict(&tally, 2, &RULES) else {
            panic!("expected pending");
        };
        assert_eq!(missing, 2);
        assert!(reason.starts_with("2 more approvals needed"), "{reason}");
        assert!(
            reason.contains("; none counts yet; not counted: `dave`"),
            "{reason}"
        );
    }

    #[test]
    fn later_counting_approval_clears_exclusion() {
        let tally = Tally::of([("dave", "viewer"), ("dave", "approver")], &RULES);
        assert_eq!(tally.counted, ["dave"]);
        assert!(tally.excluded.is_empty());
    }

    #[test]
    fn lower_required_role_counts_editors() {
        let rules = Rules {
            role: Role::Editor,
            ..RULES
        };
        let tally = Tally::of([("erin", "editor"), ("dave", "viewer")], &rules);
        assert_eq!(tally.counted, ["erin"]);
        assert_eq!(verdict(&tally, 1, &rules), Verdict::Allow);
    }
}
