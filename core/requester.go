package core

import "context"

type requesterKey struct{}

// WithRequester names who a request comes from: "admin", or a node's name.
// The API server, which authenticates, sets it; services that count or
// log per client (the registry's per-node counters) read it with
// Requester.
func WithRequester(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, requesterKey{}, name)
}

// Requester returns the name WithRequester gave ctx ("" if none).
func Requester(ctx context.Context) string {
	name, _ := ctx.Value(requesterKey{}).(string)
	return name
}
