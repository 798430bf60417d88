//! The providers this process can call, built from the configuration's settings.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::call::Provider;
use super::client::Http;
use super::failure::{ErrorClass, Failure};
use super::name::ProviderName;
use super::{echo, gemini, http, openai};
use crate::secret::{Redactor, Secret};

/// What the providers are given by the configuration. Its Debug shows no key and no
/// endpoint URL (one may carry a token), only the endpoints' names.
#[derive(Clone, Default)]
pub struct ProviderSettings {
    pub gemini_key: Option<Secret>,
    pub gemini_base: String,
    pub openai_key: Option<Secret>,
    pub openai_base: String,
    /// `--http-endpoint name=url`.
    pub http_endpoints: BTreeMap<String, String>,
}

impl fmt::Debug for ProviderSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderSettings")
            .field("gemini_key", &self.gemini_key)
            .field("gemini_base", &self.gemini_base)
            .field("openai_key", &self.openai_key)
            .field("openai_base", &self.openai_base)
            .field("http_endpoints", &self.http_endpoints.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Every provider this process can call, by name, and the reason each missing one is off.
pub struct Providers {
    enabled: BTreeMap<ProviderName, Arc<dyn Provider>>,
    disabled: BTreeMap<ProviderName, &'static str>,
}

impl Providers {
    pub fn new(s: &ProviderSettings, timeout: Duration, redactor: Redactor) -> anyhow::Result<Providers> {
        let http = Http::new(timeout, redactor)?;
        let mut p = Providers { enabled: BTreeMap::new(), disabled: BTreeMap::new() };
        p.enabled.insert(ProviderName::Echo, Arc::new(echo::Echo));
        match &s.gemini_key {
            Some(key) => p.enable(ProviderName::Gemini, gemini::Gemini::new(http.clone(), &s.gemini_base, key.clone())),
            None => p.disable(ProviderName::Gemini, "no Gemini API key is configured (set GEMINI_API_KEY)"),
        }
        match &s.openai_key {
            Some(key) => p.enable(ProviderName::OpenAi, openai::OpenAi::new(http.clone(), &s.openai_base, key.clone())),
            None => p.disable(ProviderName::OpenAi, "no OpenAI API key is configured (set OPENAI_API_KEY)"),
        }
        if s.http_endpoints.is_empty() {
            p.disable(ProviderName::Http, "no HTTP endpoint is configured (set --http-endpoint name=url)");
        } else {
            p.enable(ProviderName::Http, http::HttpProvider::new(http, s.http_endpoints.clone()));
        }
        Ok(p)
    }

    fn enable(&mut self, name: ProviderName, p: impl Provider + 'static) {
        self.enabled.insert(name, Arc::new(p));
    }

    fn disable(&mut self, name: ProviderName, why: &'static str) {
        self.disabled.insert(name, why);
    }

    pub fn enabled_names(&self) -> Vec<ProviderName> {
        self.enabled.keys().copied().collect()
    }

    /// The provider a call names, or the failure that ends its job (class `config`).
    pub fn get(&self, name: ProviderName) -> Result<Arc<dyn Provider>, Failure> {
        if let Some(p) = self.enabled.get(&name) {
            return Ok(p.clone());
        }
        let why = self.disabled.get(&name).copied().unwrap_or("not built into this fetcher");
        Err(Failure::fatal(ErrorClass::Config, format!("provider {name} is disabled: {why}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_provider_without_its_key_is_disabled_with_class_config() {
        let s = ProviderSettings::default();
        let p = Providers::new(&s, Duration::from_secs(1), Redactor::default()).unwrap();
        assert_eq!(p.enabled_names(), vec![ProviderName::Echo]);
        let f = p.get(ProviderName::Gemini).err().unwrap();
        assert_eq!((f.retry, f.class), (false, ErrorClass::Config));
        assert!(f.message.contains("GEMINI_API_KEY"), "{}", f.message);
    }
}
