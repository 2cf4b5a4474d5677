"""Who is looking and what they may do: the signed-in identity (from the OpenID Connect provider's claims), the
roles file that maps its groups to a role, the one permission table every page asks, and the access log."""
