//! The verdict of a regional round (DESIGN.md "Regions and quorum").

/// The quorum in effect for `regions` regions: `set`, else a majority
/// (`regions / 2 + 1`); 0 for a service without regions.
pub fn effective(regions: usize, set: Option<u32>) -> u32 {
    if regions == 0 {
        return 0;
    }
    let majority = u32::try_from(regions / 2 + 1).unwrap_or(u32::MAX);
    set.unwrap_or(majority)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_quorum_is_a_majority() {
        assert_eq!(effective(0, None), 0);
        assert_eq!(effective(1, None), 1);
        assert_eq!(effective(2, None), 2);
        assert_eq!(effective(3, None), 2);
        assert_eq!(effective(4, None), 3);
        assert_eq!(effective(3, Some(1)), 1);
    }
}
