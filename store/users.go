package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"

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
		return nil, translateFind(err, "user", id)
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
	return db.generatedSetting(ctx, authSecretSetting, 32)
}

// deploymentSetting names the random identity of the database.
const deploymentSetting = "deployment.id"

// DeploymentID returns a random identity of this database (hex), generated
// on first use: the replicas sharing the database share it, and nothing
// else does (it keeps their broker channels apart from other deployments'
// on a shared Redis).
func (db *DB) DeploymentID(ctx context.Context) (string, error) {
	id, err := db.generatedSetting(ctx, deploymentSetting, 8)
	return hex.EncodeToString(id), err
}

// generatedSetting returns the setting name, storing n random bytes under
// it first if it is not set; replicas racing to create it all end up with
// the one that was stored first.
func (db *DB) generatedSetting(ctx context.Context, name string, n int) ([]byte, error) {
	var s setting
	err := db.gorm.WithContext(ctx).Take(&s, "name = ?", name).Error
	if err == nil {
		return s.Value, nil
	}
	if !errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, translate(err, "read setting "+name)
	}
	value := make([]byte, n)
	_, _ = rand.Read(value)
	err = db.gorm.WithContext(ctx).Clauses(clause.OnConflict{DoNothing: true}).
		Create(&setting{Name: name, Value: value}).Error
	if err != nil {
		return nil, translate(err, "store setting "+name)
	}
	if err := db.gorm.WithContext(ctx).Take(&s, "name = ?", name).Error; err != nil {
		return nil, translate(err, "read setting "+name)
	}
	return s.Value, nil
}
