package models

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// Idempotent writes. A client that did not get the answer to a write (a
// timeout, a dropped connection) cannot tell whether it happened; sending
// it again with the same key is safe: a write whose key its user already
// used for that operation within IdempotencyWindow is not done again, and
// its answer is the first one. docs/design.md says why it works this way.

// IdempotencyWindow is how long a key is remembered after its write: a
// retry within it is answered with the first result, a write after it is a
// new write.
const IdempotencyWindow = 24 * time.Hour

// MaxIdempotencyKeyLength is the longest key, in characters.
const MaxIdempotencyKeyLength = 128

// The operations that take an idempotency key, as a key's scope names
// them: the mutations' names.
const (
	OpPostStatus       = "postStatus"
	OpPostMessage      = "postMessage"
	OpSendNotification = "sendNotification"
	OpRecordKPIs       = "recordKPIs"
)

// IdempotencyKey checks a client's key: 1..MaxIdempotencyKeyLength
// visible ASCII characters ('!' to '~': no spaces or control characters),
// as a UUID, a ULID or base64 text are. Anything else is BadUserInput.
func IdempotencyKey(key string) (string, error) {
	if key == "" || len(key) > MaxIdempotencyKeyLength {
		return "", Errorf(BadUserInput, "idempotencyKey must be 1..%d characters long (got %d)", MaxIdempotencyKeyLength, len(key))
	}
	for i := range len(key) {
		if c := key[i]; c < '!' || c > '~' {
			return "", Errorf(BadUserInput, "idempotencyKey may contain only visible ASCII characters ('!' to '~'), as a UUID does")
		}
	}
	return key, nil
}

// Idempotency is one keyed write: whose key it is, for which operation,
// the key, and the fingerprint of the write's arguments. The store
// remembers it with the write's result, in the write's transaction.
type Idempotency struct {
	UserID      int64
	Operation   string
	Key         string
	Fingerprint string
}

// NewIdempotency returns the keyed write of key (already checked by
// IdempotencyKey) by user by to operation, whose arguments are args
// (their normalised values: a text as it is stored), or nil when key is
// "": an unkeyed write, whose by may be nil. args must encode as JSON; the
// fingerprint is the SHA-256 of that encoding, so a retry with other
// arguments is told apart.
func NewIdempotency(by *User, operation, key string, args any) (*Idempotency, error) {
	if key == "" {
		return nil, nil
	}
	raw, err := json.Marshal(args)
	if err != nil {
		return nil, fmt.Errorf("fingerprint %s arguments: %w", operation, err)
	}
	sum := sha256.Sum256(raw)
	return &Idempotency{UserID: by.ID, Operation: operation, Key: key, Fingerprint: hex.EncodeToString(sum[:])}, nil
}

// Reused is the refusal of a key that its user already used for a write
// of the same operation with other arguments, within IdempotencyWindow.
func (k *Idempotency) Reused() error {
	return Errorf(BadUserInput, "idempotencyKey %s was used for another %s with other arguments; a new write needs a new key",
		QuoteInput(k.Key), k.Operation)
}
