-- A delivery the platform refuses for its own sake (SNS InvalidParameter: a payload it will not
-- take) is settled `failed` with the reason: not retried, and its endpoint kept (unlike `gone`).
ALTER TABLE user_alert_deliveries
    DROP CONSTRAINT user_alert_deliveries_state_check,
    ADD CONSTRAINT user_alert_deliveries_state_check
        CHECK (state IN ('pending', 'delivered', 'gone', 'failed'));
