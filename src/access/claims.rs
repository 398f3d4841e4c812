//! Claims: which resource owns an instance ID. Pure, so every replica and every restart picks the
//! same owner from the same set of resources.
//!
//! The owner is the oldest resource by `metadata.creationTimestamp`; resources created in the same
//! second are ordered by namespace, then name. A resource without a creation time (not yet stored)
//! sorts after every stored one.

use jiff::Timestamp;

/// One resource naming an instance: its creation time and its `namespace/name` identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claimant<'a> {
    /// `metadata.creationTimestamp`.
    pub created: Option<Timestamp>,
    /// `metadata.namespace`.
    pub namespace: &'a str,
    /// `metadata.name`.
    pub name: &'a str,
}

impl Claimant<'_> {
    /// The ordering key: older first, then namespace, then name.
    fn key(&self) -> (bool, Option<Timestamp>, &str, &str) {
        (
            self.created.is_none(),
            self.created,
            self.namespace,
            self.name,
        )
    }
}

/// The owner among the resources naming one instance: the oldest, ties by namespace/name.
/// `None` only for an empty set.
pub fn owner<'a, 'b>(claimants: impl IntoIterator<Item = &'b Claimant<'a>>) -> Option<Claimant<'a>>
where
    'a: 'b,
{
    claimants
        .into_iter()
        .min_by(|a, b| a.key().cmp(&b.key()))
        .copied()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).unwrap()
    }

    fn c<'a>(created: Option<Timestamp>, namespace: &'a str, name: &'a str) -> Claimant<'a> {
        Claimant {
            created,
            namespace,
            name,
        }
    }

    #[test]
    fn the_oldest_owns_ties_go_by_namespace_then_name_and_order_of_listing_does_not_matter() {
        let table: [(&str, Vec<Claimant<'_>>, (&str, &str)); 6] = [
            ("alone", vec![c(Some(at(5)), "a", "x")], ("a", "x")),
            (
                "older wins across namespaces",
                vec![c(Some(at(5)), "a", "new"), c(Some(at(1)), "z", "old")],
                ("z", "old"),
            ),
            (
                "same second: namespace first",
                vec![c(Some(at(1)), "team-b", "a"), c(Some(at(1)), "team-a", "z")],
                ("team-a", "z"),
            ),
            (
                "same second and namespace: name",
                vec![c(Some(at(1)), "ns", "web-2"), c(Some(at(1)), "ns", "web-1")],
                ("ns", "web-1"),
            ),
            (
                "no creation time sorts last",
                vec![c(None, "a", "a"), c(Some(at(9)), "z", "z")],
                ("z", "z"),
            ),
            (
                "three",
                vec![
                    c(Some(at(3)), "a", "a"),
                    c(Some(at(2)), "b", "b"),
                    c(Some(at(2)), "b", "a"),
                ],
                ("b", "a"),
            ),
        ];
        for (what, claimants, (namespace, name)) in table {
            let forward = owner(&claimants).unwrap();
            let mut reversed = claimants.clone();
            reversed.reverse();
            let backward = owner(&reversed).unwrap();
            assert_eq!(
                (forward.namespace, forward.name),
                (namespace, name),
                "{what}"
            );
            assert_eq!(
                forward, backward,
                "{what}: the listing order changed the owner"
            );
        }
        assert!(owner(&[]).is_none());
    }
}
