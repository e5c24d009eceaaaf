package reporter

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/troy-audit/troy/policies"
	"github.com/troy-audit/troy/schemas"
)

// Audited is one audited trace and where it was read from, for the CI formats.
type Audited struct {
	File   string // the trace file as given on the command line
	Line   int    // the trace's line within a .jsonl file; 0 for a file of one trace
	Result *schemas.AuditResult
}

// SARIFSchema is the schema URI a SARIF 2.1.0 log names.
const SARIFSchema = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"

// The subset of SARIF 2.1.0 that troy writes; field names are the specification's.
type (
	sarifLog struct {
		Schema  string     `json:"$schema"`
		Version string     `json:"version"`
		Runs    []sarifRun `json:"runs"`
	}
	sarifRun struct {
		Tool    sarifTool     `json:"tool"`
		Results []sarifResult `json:"results"`
		// Properties name the policy the run evaluated.
		Properties map[string]any `json:"properties,omitempty"`
	}
	sarifTool struct {
		Driver sarifDriver `json:"driver"`
	}
	sarifDriver struct {
		Name           string      `json:"name"`
		Version        string      `json:"version,omitempty"`
		InformationURI string      `json:"informationUri,omitempty"`
		Rules          []sarifRule `json:"rules"`
	}
	sarifRule struct {
		ID                   string         `json:"id"`
		Name                 string         `json:"name,omitempty"`
		ShortDescription     sarifMessage   `json:"shortDescription"`
		FullDescription      *sarifMessage  `json:"fullDescription,omitempty"`
		DefaultConfiguration sarifConfig    `json:"defaultConfiguration"`
		Properties           map[string]any `json:"properties,omitempty"`
	}
	sarifConfig struct {
		Level string `json:"level"`
	}
	sarifMessage struct {
		Text string `json:"text"`
	}
	sarifResult struct {
		RuleID              string            `json:"ruleId"`
		RuleIndex           int               `json:"ruleIndex"`
		Level               string            `json:"level"`
		Message             sarifMessage      `json:"message"`
		Locations           []sarifLocation   `json:"locations"`
		PartialFingerprints map[string]string `json:"partialFingerprints"`
		Properties          map[string]any    `json:"properties,omitempty"`
	}
	sarifLocation struct {
		PhysicalLocation sarifPhysical  `json:"physicalLocation"`
		LogicalLocations []sarifLogical `json:"logicalLocations,omitempty"`
	}
	sarifPhysical struct {
		ArtifactLocation sarifArtifact `json:"artifactLocation"`
		Region           *sarifRegion  `json:"region,omitempty"`
	}
	sarifArtifact struct {
		URI string `json:"uri"`
	}
	sarifRegion struct {
		StartLine int `json:"startLine"`
	}
	sarifLogical struct {
		Name               string `json:"name,omitempty"`
		FullyQualifiedName string `json:"fullyQualifiedName"`
		Kind               string `json:"kind"`
	}
)

// sarifLevel maps a severity to a SARIF level: critical and high are errors.
func sarifLevel(severity string) string {
	switch severity {
	case schemas.SeverityCritical, schemas.SeverityHigh:
		return "error"
	case schemas.SeverityMedium:
		return "warning"
	}
	return "note"
}

// securitySeverity is the CVSS-like score GitHub code scanning ranks security alerts by.
func securitySeverity(severity string) string {
	switch severity {
	case schemas.SeverityCritical:
		return "9.5"
	case schemas.SeverityHigh:
		return "8.0"
	case schemas.SeverityMedium:
		return "5.5"
	}
	return "2.0"
}

// WriteSARIF writes the violations of audited traces as a SARIF 2.1.0 log: one run, the
// policy's rules as the driver's rules, a result per violation located in its trace file
// (the line of a .jsonl record) and, logically, at the step's JSON path (steps[i]).
func WriteSARIF(w io.Writer, version string, p *policies.Policy, traces []Audited) error {
	driver := sarifDriver{Name: "troy", Version: version, InformationURI: "https://github.com/troy-audit/troy", Rules: []sarifRule{}}
	index := map[string]int{}
	for _, r := range p.Rules {
		index[r.RuleID] = len(driver.Rules)
		driver.Rules = append(driver.Rules, sarifRuleOf(p.PolicyID, r.RuleID, r.Description, r.Severity, r.Weight))
	}
	results := []sarifResult{}
	for _, t := range traces {
		tr := t.Result.Trace
		for _, v := range t.Result.Violations {
			i, ok := index[v.RuleID]
			if !ok { // a rule of an older policy revision (an audit run through a deployment)
				i = len(driver.Rules)
				index[v.RuleID] = i
				driver.Rules = append(driver.Rules, sarifRuleOf(p.PolicyID, v.RuleID, v.RuleDescription, v.Severity, 0))
			}
			path := stepPath(tr, v.StepID)
			msg := fmt.Sprintf("%s [trace %s, agent %s, step %s]", firstNonEmpty(v.Details, v.RuleDescription, v.RuleID), tr.TraceID, tr.AgentName, v.StepID)
			loc := sarifLocation{
				PhysicalLocation: sarifPhysical{ArtifactLocation: sarifArtifact{URI: fileURI(t.File)}},
				LogicalLocations: []sarifLogical{{Name: v.StepID, FullyQualifiedName: path, Kind: "element"}},
			}
			if t.Line > 0 {
				loc.PhysicalLocation.Region = &sarifRegion{StartLine: t.Line}
			}
			results = append(results, sarifResult{
				RuleID:    v.RuleID,
				RuleIndex: i,
				Level:     sarifLevel(v.Severity),
				Message:   sarifMessage{Text: msg},
				Locations: []sarifLocation{loc},
				// The same violation in the same trace is the same alert from run to run.
				PartialFingerprints: map[string]string{"troyViolation/v1": fingerprint(tr.TraceID, v.RuleID, v.StepID)},
				Properties: map[string]any{
					"trace_id": tr.TraceID, "agent_name": tr.AgentName, "step_id": v.StepID,
					"severity": v.Severity, "risk_score": t.Result.RiskScore,
				},
			})
		}
	}
	log := sarifLog{Schema: SARIFSchema, Version: "2.1.0", Runs: []sarifRun{{
		Tool:       sarifTool{Driver: driver},
		Results:    results,
		Properties: map[string]any{"policy_id": p.PolicyID},
	}}}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(log)
}

func sarifRuleOf(policyID, id, description, severity string, weight int) sarifRule {
	props := map[string]any{
		"severity":          severity,
		"security-severity": securitySeverity(severity),
		"tags":              []string{"troy", "security", policyID},
		"policy_id":         policyID,
	}
	if weight > 0 {
		props["weight"] = weight
	}
	return sarifRule{
		ID:                   id,
		Name:                 id,
		ShortDescription:     sarifMessage{Text: firstNonEmpty(description, id)},
		DefaultConfiguration: sarifConfig{Level: sarifLevel(severity)},
		Properties:           props,
	}
}

// stepPath is the JSON path of a step in its trace: steps[i], the first step with the id.
func stepPath(t *schemas.Trace, stepID string) string {
	for i, s := range t.Steps {
		if s.StepID == stepID {
			return fmt.Sprintf("steps[%d]", i)
		}
	}
	return "steps"
}

// fileURI writes a path as a SARIF artifact URI: relative paths as relative references
// with forward slashes (what code scanning resolves against the repository), absolute
// ones as file: URIs.
func fileURI(path string) string {
	p := filepath.ToSlash(path)
	if filepath.IsAbs(path) {
		return (&url.URL{Scheme: "file", Path: p}).String()
	}
	p = strings.TrimPrefix(p, "./")
	return (&url.URL{Path: p}).String()
}

func fingerprint(parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(sum[:16])
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}
