package models_test

import (
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/switchboardhq/switchboard/models"
)

func ptr[T any](v T) *T { return &v }

func TestValidateKPIInputs(t *testing.T) {
	v := func(module, key string, value float64) *models.KPIInput {
		return &models.KPIInput{Module: module, Key: key, Value: value}
	}
	batch := func(n int) []*models.KPIInput {
		out := make([]*models.KPIInput, n)
		for i := range out {
			out[i] = v("m", "k"+strings.Repeat("x", i%31)+string(rune('a'+i/31)), 1)
		}
		return out
	}
	longest := "a" + strings.Repeat("z9_-", 7) + "zzz" // 32
	cases := []struct {
		name    string
		in      []*models.KPIInput
		errPart string
	}{
		{name: "one", in: []*models.KPIInput{v("sales", "revenue", 1)}},
		{name: "names with digits, '-' and '_'", in: []*models.KPIInput{v("a", "b", 0), v("e-learning_2", "p95_latency-ms", -1)}},
		{name: "32-character names", in: []*models.KPIInput{v(longest, longest, 1)}},
		{name: "extreme finite values", in: []*models.KPIInput{v("m", "max", math.MaxFloat64), v("m", "min", -math.MaxFloat64),
			v("m", "tiny", math.SmallestNonzeroFloat64), v("m", "zero", math.Copysign(0, -1))}},
		{name: "one key in two modules", in: []*models.KPIInput{v("sales", "total", 1), v("hr", "total", 2)}},
		{name: "the largest batch", in: batch(models.MaxKPIBatch)},
		{name: "label and unit at their limits", in: []*models.KPIInput{
			{Module: "m", Key: "k", Label: ptr(strings.Repeat("ü", 100)), Unit: ptr(strings.Repeat("€", 16))}}},
		{name: "empty label and unit", in: []*models.KPIInput{{Module: "m", Key: "k", Label: ptr(""), Unit: ptr("")}}},

		{name: "nothing", in: nil, errPart: "inputs must not be empty"},
		{name: "one too many", in: batch(models.MaxKPIBatch + 1), errPart: "inputs holds 501 values; the limit is 500"},
		{name: "no module", in: []*models.KPIInput{v("", "k", 1)}, errPart: `inputs[0].module ""`},
		{name: "upper-case module", in: []*models.KPIInput{v("Sales", "k", 1)}, errPart: `inputs[0].module "Sales"`},
		{name: "module starting with a digit", in: []*models.KPIInput{v("9s", "k", 1)}, errPart: "inputs[0].module"},
		{name: "module starting with '_'", in: []*models.KPIInput{v("_s", "k", 1)}, errPart: "inputs[0].module"},
		{name: "module with a space", in: []*models.KPIInput{v("sales ", "k", 1)}, errPart: "inputs[0].module"},
		{name: "module with a dot", in: []*models.KPIInput{v("sales.eu", "k", 1)}, errPart: "inputs[0].module"},
		{name: "non-ASCII module", in: []*models.KPIInput{v("ventes-é", "k", 1)}, errPart: "inputs[0].module"},
		{name: "33-character module", in: []*models.KPIInput{v(longest+"x", "k", 1)}, errPart: "inputs[0].module"},
		{name: "bad key after good inputs", in: []*models.KPIInput{v("m", "a", 1), v("m", "b", 1), v("m", "-c", 1)},
			errPart: `inputs[2].key "-c": ` + models.KPINamePattern},
		{name: "33-character key", in: []*models.KPIInput{v("m", longest+"x", 1)}, errPart: "inputs[0].key"},
		{name: "NaN", in: []*models.KPIInput{v("m", "a", 1), v("m", "b", math.NaN())}, errPart: "inputs[1].value must be a finite number"},
		{name: "+Inf", in: []*models.KPIInput{v("m", "a", math.Inf(1))}, errPart: "inputs[0].value must be a finite number"},
		{name: "-Inf", in: []*models.KPIInput{v("m", "a", math.Inf(-1))}, errPart: "inputs[0].value must be a finite number"},
		{name: "twice", in: []*models.KPIInput{v("m", "a", 1), v("n", "a", 1), v("m", "a", 2)}, errPart: "inputs[2]: m/a appears twice"},
		{name: "label too long", in: []*models.KPIInput{{Module: "m", Key: "k", Label: ptr(strings.Repeat("ü", 101))}},
			errPart: "inputs[0].label must be at most 100 characters"},
		{name: "label not UTF-8", in: []*models.KPIInput{{Module: "m", Key: "k", Label: ptr("a\xffb")}}, errPart: "inputs[0].label"},
		{name: "unit too long", in: []*models.KPIInput{{Module: "m", Key: "k", Unit: ptr(strings.Repeat("x", 17))}},
			errPart: "inputs[0].unit must be at most 16 characters"},
		{name: "unit not UTF-8", in: []*models.KPIInput{{Module: "m", Key: "k", Unit: ptr("\xff")}}, errPart: "inputs[0].unit"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := models.ValidateKPIInputs(tc.in)
			if tc.errPart != "" {
				assert.Equal(t, models.BadUserInput, models.ErrorCode(err), "error %v", err)
				assert.ErrorContains(t, err, tc.errPart)
				return
			}
			assert.NoError(t, err)
		})
	}
}

func TestValidateKPIInputsTrims(t *testing.T) {
	in := []*models.KPIInput{{Module: "m", Key: "k", Label: ptr("  Revenue \n"), Unit: ptr(" EUR ")}, {Module: "m", Key: "j"}}
	assert.NoError(t, models.ValidateKPIInputs(in))
	assert.Equal(t, "Revenue", *in[0].Label)
	assert.Equal(t, "EUR", *in[0].Unit)
	assert.Nil(t, in[1].Label, "an absent label stays absent (kept as it was)")
	assert.Nil(t, in[1].Unit)

	long := []*models.KPIInput{{Module: "m", Key: "k", Label: ptr(" " + strings.Repeat("x", 100) + " ")}}
	assert.NoError(t, models.ValidateKPIInputs(long), "the limit counts the trimmed label")
}

func TestKPIChange(t *testing.T) {
	cases := []struct {
		name             string
		previous         *float64
		value            float64
		change, relative *float64
	}{
		{name: "first value", value: 5},
		{name: "up", previous: ptr(100.0), value: 110, change: ptr(10.0), relative: ptr(0.1)},
		{name: "down", previous: ptr(50.0), value: 40, change: ptr(-10.0), relative: ptr(-0.2)},
		{name: "up from a negative value", previous: ptr(-10.0), value: -5, change: ptr(5.0), relative: ptr(0.5)},
		{name: "down from a negative value", previous: ptr(-10.0), value: -15, change: ptr(-5.0), relative: ptr(-0.5)},
		{name: "from 0", previous: ptr(0.0), value: 3, change: ptr(3.0)},
		{name: "unchanged", previous: ptr(7.0), value: 7, change: ptr(0.0), relative: ptr(0.0)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k := &models.KPI{Value: tc.value, Previous: tc.previous}
			assert.Equal(t, tc.change, k.Change())
			if tc.relative == nil {
				assert.Nil(t, k.RelativeChange())
				return
			}
			if assert.NotNil(t, k.RelativeChange()) {
				assert.InDelta(t, *tc.relative, *k.RelativeChange(), 1e-12)
			}
		})
	}
}
