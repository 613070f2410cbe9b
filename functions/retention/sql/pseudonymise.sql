-- Raw events in [$1, $2) lose what identifies a person: the device id becomes its SHA-256 with
-- this run's salt $3 (never stored), the IP its /24 (IPv4) or /48 (IPv6) network.
UPDATE ad_events
   SET device_id = encode(sha256($3 || convert_to(device_id, 'UTF8')), 'hex'),
       ip = network(set_masklen(ip, CASE family(ip) WHEN 4 THEN 24 ELSE 48 END))::inet,
       anonymised_at = now()
 WHERE occurred_at >= $1 AND occurred_at < $2 AND anonymised_at IS NULL
