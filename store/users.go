package store

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/switchboardhq/switchboard/models"
)

// CreateUser stores a new user named name (already validated) and returns it.
func (db *DB) CreateUser(ctx context.Context, name string) (*models.User, error) {
	u := &models.User{Name: name}
	if err := db.gorm.WithContext(ctx).Create(u).Error; err != nil {
		return nil, translate(err, "create user")
	}
	u.CreatedAt = u.CreatedAt.UTC()
	return u, nil
}

// User returns the user with the given id, or a models.NotFound error.
func (db *DB) User(ctx context.Context, id int64) (*models.User, error) {
	var u models.User
	if err := db.gorm.WithContext(ctx).Take(&u, id).Error; err != nil {
		return nil, translate(err, fmt.Sprintf("user %d", id))
	}
	u.CreatedAt = u.CreatedAt.UTC()
	return &u, nil
}

// authSecretSetting names the generated token signing key.
const authSecretSetting = "auth.secret"

// AuthSecret returns the token signing key kept in the database, generating
// and storing a random 32-byte key on first use. Replicas racing to create it
// all end up with the one that was stored first.
func (db *DB) AuthSecret(ctx context.Context) ([]byte, error) {
	var s setting
	err := db.gorm.WithContext(ctx).Take(&s, "name = ?", authSecretSetting).Error
	if err == nil {
		return s.Value, nil
	}
	if !errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, translate(err, "read signing key")
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	err = db.gorm.WithContext(ctx).Clauses(clause.OnConflict{DoNothing: true}).
		Create(&setting{Name: authSecretSetting, Value: key}).Error
	if err != nil {
		return nil, translate(err, "store signing key")
	}
	if err := db.gorm.WithContext(ctx).Take(&s, "name = ?", authSecretSetting).Error; err != nil {
		return nil, translate(err, "read signing key")
	}
	return s.Value, nil
}
