DELETE FROM budget_settlements WHERE settle_date = $1
