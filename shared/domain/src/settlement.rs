//! Budget settlement (SPEC §3): a campaign's Redis day counter against its DB deductions (the
//! day's ad event costs), both in whole won.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Classification {
    Match,
    RedisOver,
    DbOver,
    MissingInRedis,
    MissingInDb,
}

impl Classification {
    pub const ALL: [Self; 5] = [
        Self::Match,
        Self::RedisOver,
        Self::DbOver,
        Self::MissingInRedis,
        Self::MissingInDb,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Match => "match",
            Self::RedisOver => "redis_over",
            Self::DbOver => "db_over",
            Self::MissingInRedis => "missing_in_redis",
            Self::MissingInDb => "missing_in_db",
        }
    }
}

/// Compares a counter (None: no key) with the DB's deductions (None: no events). Nothing on
/// one side and zero on the other is a match: nothing was spent either way.
pub fn classify(redis_spent: Option<i64>, db_spent: Option<i64>) -> Classification {
    match (redis_spent, db_spent) {
        (None, Some(db)) if db != 0 => Classification::MissingInRedis,
        (Some(redis), None) if redis != 0 => Classification::MissingInDb,
        (redis, db) => {
            let (redis, db) = (redis.unwrap_or(0), db.unwrap_or(0));
            match redis.cmp(&db) {
                std::cmp::Ordering::Equal => Classification::Match,
                std::cmp::Ordering::Greater => Classification::RedisOver,
                std::cmp::Ordering::Less => Classification::DbOver,
            }
        }
    }
}

/// Micro-won summed from the events, to whole won as the counters hold it (half up).
pub fn micros_to_won(micros: i64) -> i64 {
    micros.saturating_add(500_000).div_euclid(1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Classification::*;

    #[test]
    fn every_pair_is_classified() {
        assert_eq!(classify(Some(100), Some(100)), Match);
        assert_eq!(classify(Some(101), Some(100)), RedisOver);
        assert_eq!(classify(Some(99), Some(100)), DbOver);
        assert_eq!(classify(None, Some(100)), MissingInRedis);
        assert_eq!(classify(Some(100), None), MissingInDb);
        assert_eq!(classify(None, Some(0)), Match);
        assert_eq!(classify(Some(0), None), Match);
        assert_eq!(classify(None, None), Match);
    }

    #[test]
    fn micros_round_half_up_to_won() {
        assert_eq!(micros_to_won(0), 0);
        assert_eq!(micros_to_won(499_999), 0);
        assert_eq!(micros_to_won(500_000), 1);
        assert_eq!(micros_to_won(1_250_000_000), 1250);
    }

    #[test]
    fn labels_match_the_schema() {
        let labels: Vec<&str> = Classification::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            labels,
            [
                "match",
                "redis_over",
                "db_over",
                "missing_in_redis",
                "missing_in_db"
            ]
        );
        assert_eq!(
            serde_json::to_value(MissingInRedis).expect("serialise"),
            "missing_in_redis"
        );
    }
}
