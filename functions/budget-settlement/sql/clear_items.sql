DELETE FROM budget_settlement_items WHERE settle_date = $1
