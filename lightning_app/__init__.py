"""The production HTTP application over `clf.serving`: `lightning_app.app.create_app`, started by `clf serve`
(`lightning_app.server.serve`). Nothing is imported here, so `clf --help` stays fast."""
