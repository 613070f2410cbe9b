-- Who deactivated an advertiser, apart from why (issue 31): the reason an operator gives is
-- kept whole (1 to 500 characters, as the admin API documents), and the operator's name no
-- longer shares its 500 characters. NULL when an exhausted month deactivated it.
ALTER TABLE advertisers ADD COLUMN deactivated_by TEXT CHECK (length(deactivated_by) <= 1000);
