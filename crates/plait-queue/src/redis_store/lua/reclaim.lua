-- Reclaims the leases of one queue that ran out. ARGV: prefix, now. Returns how many.
return reclaim(ARGV[1], clock(ARGV[2]))
