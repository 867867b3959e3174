"""gRPC servicers: thin translations between messages and the domain, errors to status."""
