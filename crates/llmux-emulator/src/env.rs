//! The environment that points a client at a running emulator: for each provider id the
//! emulator serves, the provider's conventional variables (base URL and credentials) set to
//! this emulator's address and accepted credentials. `llmux emulate` prints them; tests feed
//! them to the client's settings loader.

use crate::{Emulator, Vendor};

impl Vendor {
    /// The provider ids this vendor's emulator serves (`openai` also serves the other
    /// OpenAI-style presets).
    pub fn provider_ids(self) -> &'static [&'static str] {
        match self {
            Vendor::OpenAi => &["openai", "deepseek", "moonshot", "vllm"],
            Vendor::DashScope => &["dashscope", "dashscope-compat"],
            Vendor::Hunyuan => &["hunyuan", "hunyuan-openai"],
            Vendor::Zhipu => &["zhipu"],
            Vendor::Ollama => &["ollama"],
            Vendor::Spark => &["spark", "spark-http"],
            Vendor::Pangu => &["pangu"],
        }
    }

    /// Every vendor, in declaration order.
    pub const ALL: [Vendor; 7] = [
        Vendor::OpenAi,
        Vendor::DashScope,
        Vendor::Hunyuan,
        Vendor::Zhipu,
        Vendor::Ollama,
        Vendor::Spark,
        Vendor::Pangu,
    ];

    /// The vendor whose emulator serves provider `id`.
    pub fn for_provider(id: &str) -> Option<Vendor> {
        Vendor::ALL
            .into_iter()
            .find(|v| v.provider_ids().contains(&id))
    }
}

impl Emulator {
    fn credential_value(&self, field: &str) -> String {
        self.shared.auth.credential(field).to_owned()
    }

    fn first_key(&self) -> String {
        self.shared
            .api_keys
            .first()
            .cloned()
            .unwrap_or_else(|| self.vendor.default_key().to_owned())
    }

    /// The base URL a client of provider `id` should use with this emulator.
    pub fn base_url_for(&self, id: &str) -> Option<String> {
        if !self.vendor.provider_ids().contains(&id) {
            return None;
        }
        match id {
            "dashscope-compat" | "hunyuan-openai" | "spark-http" => self.compat_base_url(),
            _ => Some(self.base_url()),
        }
    }

    /// The variables (name, value) that point provider `id` at this emulator, named as the
    /// provider's conventional environment variables; `None` if this emulator does not serve `id`.
    pub fn env_for(&self, id: &str) -> Option<Vec<(String, String)>> {
        let base = self.base_url_for(id)?;
        let v = |pairs: &[(&str, String)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect()
        };
        let key = self.first_key();
        Some(match id {
            "openai" => v(&[("OPENAI_BASE_URL", base), ("OPENAI_API_KEY", key)]),
            "deepseek" => v(&[("DEEPSEEK_BASE_URL", base), ("DEEPSEEK_API_KEY", key)]),
            "moonshot" => v(&[("MOONSHOT_BASE_URL", base), ("MOONSHOT_API_KEY", key)]),
            "vllm" => v(&[("VLLM_BASE_URL", base), ("VLLM_API_KEY", key)]),
            "dashscope" => v(&[("DASHSCOPE_BASE_URL", base), ("DASHSCOPE_API_KEY", key)]),
            "dashscope-compat" => v(&[
                ("DASHSCOPE_COMPAT_BASE_URL", base),
                ("DASHSCOPE_API_KEY", key),
            ]),
            "hunyuan" => v(&[
                ("HUNYUAN_BASE_URL", base),
                ("TENCENTCLOUD_SECRET_ID", self.credential_value("secret_id")),
                (
                    "TENCENTCLOUD_SECRET_KEY",
                    self.credential_value("secret_key"),
                ),
            ]),
            "hunyuan-openai" => v(&[("HUNYUAN_OPENAI_BASE_URL", base), ("HUNYUAN_API_KEY", key)]),
            "zhipu" => v(&[("ZHIPU_BASE_URL", base), ("ZHIPUAI_API_KEY", key)]),
            "ollama" => v(&[("OLLAMA_HOST", base)]),
            "spark" => v(&[
                ("SPARK_BASE_URL", base),
                ("SPARK_APP_ID", self.credential_value("app_id")),
                ("SPARK_API_KEY", self.credential_value("api_key")),
                ("SPARK_API_SECRET", self.credential_value("api_secret")),
            ]),
            "spark-http" => v(&[
                ("SPARK_HTTP_BASE_URL", base),
                ("SPARK_API_PASSWORD", self.credential_value("api_password")),
            ]),
            "pangu" => v(&[
                ("PANGU_BASE_URL", base.clone()),
                ("HUAWEICLOUD_IAM_ENDPOINT", base),
                ("HUAWEICLOUD_USERNAME", self.credential_value("username")),
                ("HUAWEICLOUD_PASSWORD", self.credential_value("password")),
                (
                    "HUAWEICLOUD_DOMAIN_NAME",
                    self.credential_value("domain_name"),
                ),
                (
                    "HUAWEICLOUD_PROJECT_ID",
                    self.credential_value("project_id"),
                ),
                ("HUAWEICLOUD_REGION", self.credential_value("project_name")),
            ]),
            _ => return None,
        })
    }
}
