package models

import (
	"math"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// KPI is the current value of one named metric of a module, with the value
// before it, so clients can show the change.
type KPI struct {
	Module    string    `json:"module" gorm:"primaryKey;size:32"`
	Key       string    `json:"key" gorm:"primaryKey;size:32"`
	Label     string    `json:"label" gorm:"size:100;not null"`
	Unit      string    `json:"unit" gorm:"size:16;not null"`
	Value     float64   `json:"value" gorm:"not null"`
	Previous  *float64  `json:"previous"`
	UpdatedAt time.Time `json:"updatedAt" gorm:"not null"`
}

// Change is the value minus the previous one, nil for a first value.
func (k *KPI) Change() *float64 {
	if k.Previous == nil {
		return nil
	}
	d := k.Value - *k.Previous
	return &d
}

// RelativeChange is Change relative to the previous value's magnitude, nil
// when there is no previous value or it is 0.
func (k *KPI) RelativeChange() *float64 {
	if k.Previous == nil || *k.Previous == 0 {
		return nil
	}
	r := (k.Value - *k.Previous) / math.Abs(*k.Previous)
	return &r
}

// KPISample is one recorded value of a KPI, kept for history charts.
type KPISample struct {
	ID     int64     `json:"-" gorm:"primaryKey"`
	Module string    `json:"module" gorm:"size:32;not null;index:idx_kpi_sample,priority:1"`
	Key    string    `json:"key" gorm:"size:32;not null;index:idx_kpi_sample,priority:2"`
	Value  float64   `json:"value" gorm:"not null"`
	At     time.Time `json:"at" gorm:"not null;index:idx_kpi_sample,priority:3;index"`
}

// KPIInput is one value to record.
type KPIInput struct {
	Module string
	Key    string
	Value  float64
	Label  *string
	Unit   *string
}

// kpiName is the pattern of module and key names.
var kpiName = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)

// KPINamePattern describes kpiName for error messages and docs.
const KPINamePattern = "1..32 characters: a lower-case letter, then lower-case letters, digits, '-' or '_'"

// KPIName checks that name, a module or key name the client gave as field
// ("module", "key"), follows KPINamePattern: a name that cannot exist is a
// BadUserInput error wherever it is accepted (queries and subscriptions
// too), rather than an empty answer.
func KPIName(field, name string) error {
	if !kpiName.MatchString(name) {
		return Errorf(BadUserInput, "%s %s: %s", field, QuoteInput(name), KPINamePattern)
	}
	return nil
}

// MaxKPIBatch is the most values one recordKPIs call takes.
const MaxKPIBatch = 500

// ValidateKPIInputs checks a batch: names, finite values, label and unit
// lengths, no KPI twice. The first problem is a BadUserInput error naming
// the input's index.
func ValidateKPIInputs(in []*KPIInput) error {
	if len(in) == 0 {
		return Errorf(BadUserInput, "inputs must not be empty")
	}
	if len(in) > MaxKPIBatch {
		return Errorf(BadUserInput, "inputs holds %d values; the limit is %d", len(in), MaxKPIBatch)
	}
	seen := make(map[[2]string]bool, len(in))
	for i, k := range in {
		switch {
		case !kpiName.MatchString(k.Module):
			return Errorf(BadUserInput, "inputs[%d].module %s: %s", i, QuoteInput(k.Module), KPINamePattern)
		case !kpiName.MatchString(k.Key):
			return Errorf(BadUserInput, "inputs[%d].key %s: %s", i, QuoteInput(k.Key), KPINamePattern)
		case math.IsNaN(k.Value) || math.IsInf(k.Value, 0):
			return Errorf(BadUserInput, "inputs[%d].value must be a finite number", i)
		case seen[[2]string{k.Module, k.Key}]:
			return Errorf(BadUserInput, "inputs[%d]: %s/%s appears twice", i, k.Module, k.Key)
		}
		seen[[2]string{k.Module, k.Key}] = true
		if k.Label != nil {
			l := strings.TrimSpace(*k.Label)
			if !utf8.ValidString(l) || utf8.RuneCountInString(l) > 100 {
				return Errorf(BadUserInput, "inputs[%d].label must be at most 100 characters of valid UTF-8", i)
			}
			k.Label = &l
		}
		if k.Unit != nil {
			u := strings.TrimSpace(*k.Unit)
			if !utf8.ValidString(u) || utf8.RuneCountInString(u) > 16 {
				return Errorf(BadUserInput, "inputs[%d].unit must be at most 16 characters of valid UTF-8", i)
			}
			k.Unit = &u
		}
	}
	return nil
}

// ModuleSummary is a dashboard card: one module's KPIs.
type ModuleSummary struct {
	Module    string    `json:"module"`
	KPIs      []*KPI    `json:"kpis"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// Dashboard is the summary of every module and the top movers.
type Dashboard struct {
	Modules     []*ModuleSummary `json:"modules"`
	TopMovers   []*KPI           `json:"topMovers"`
	GeneratedAt time.Time        `json:"generatedAt"`
}

// ModuleKPIs is a module's full KPI set (a kpiUpdated event).
type ModuleKPIs struct {
	Module string `json:"module"`
	KPIs   []*KPI `json:"kpis"`
}
