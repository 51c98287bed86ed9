package api

import (
	"encoding/base64"
	"fmt"
	"os"

	"sigs.k8s.io/yaml"
)

// Config is what edgectl needs to reach a master: admin.conf's format.
type Config struct {
	Server string `json:"server"`
	// CertificateAuthorityData is the base64 of the CA certificate PEM.
	CertificateAuthorityData string `json:"certificate-authority-data"`
	Token                    string `json:"token"`
}

// CAPEM returns the decoded CA certificate.
func (c *Config) CAPEM() ([]byte, error) {
	if c.CertificateAuthorityData == "" {
		return nil, nil
	}
	b, err := base64.StdEncoding.DecodeString(c.CertificateAuthorityData)
	if err != nil {
		return nil, fmt.Errorf("certificate-authority-data is not base64: %w", err)
	}
	return b, nil
}

// LoadConfig reads a config file.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Config
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &c, nil
}

// Marshal renders the config as YAML.
func (c *Config) Marshal() []byte {
	b, err := yaml.Marshal(c)
	if err != nil {
		panic(err)
	}
	return b
}
