"""The SCP fuzzer's mutations and its kept regression cases (``cases/``)."""
