"""The legacy FastRPC user API (libadsprpc / libcdsprpc) over qdarpc's emulated drivers."""
