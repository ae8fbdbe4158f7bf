//! The status page at `/ui` in a real headless Chromium (Debian's, through its
//! ChromeDriver, which `cargo xtask test` installs and starts): the admin-token login, a
//! failing tenant destination shown as failing with its reason, the Verify button, the
//! effective config with secrets masked, and tenant names shown as text, never as markup.

use std::time::{Duration, Instant};

use auditsync_core::testkit::{backend_env, unique_name as unique};
use serde_json::{json, Value};

mod support;
use support::{new_token, Client, Env};

/// The W3C WebDriver element key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One WebDriver session on ChromeDriver, deleted when dropped.
struct Browser {
    http: reqwest::blocking::Client,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start(driver: &str, chromium: &str) -> Self {
        let profile = tempfile::tempdir().unwrap();
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .no_proxy()
            .build()
            .unwrap();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--disable-gpu", "--no-first-run",
                         format!("--user-data-dir={}", profile.path().display())],
            },
        }}});
        let answer: Value = http
            .post(format!("{driver}/session"))
            .json(&capabilities)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {answer}"))
            .to_string();
        Self {
            http,
            session: format!("{driver}/session/{session}"),
            _profile: profile,
        }
    }

    fn command(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.session);
        let mut request = self.http.request(method, url);
        if !body.is_null() {
            request = request.json(&body);
        }
        let response = request.send().unwrap();
        let status = response.status();
        let answer: Value = response.json().unwrap();
        // WebDriver answers an error with a 4xx or 5xx status.
        assert!(status.is_success(), "webdriver {path}: {status} {answer}");
        answer["value"].clone()
    }

    fn go(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", json!({"url": url}));
    }

    fn find(&self, css: &str) -> String {
        let found = self.command(
            reqwest::Method::POST,
            "/element",
            json!({"using": "css selector", "value": css}),
        );
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("{css}: {found}"))
            .to_string()
    }

    fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css);
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            json!({"text": text}),
        );
    }

    fn click_element(&self, element: &str) {
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            json!({}),
        );
    }

    fn click(&self, css: &str) {
        let element = self.find(css);
        self.click_element(&element);
    }

    fn script(&self, script: &str, args: Value) -> Value {
        self.command(
            reqwest::Method::POST,
            "/execute/sync",
            json!({"script": script, "args": args}),
        )
    }

    /// The page's state as `read` returns it, once `ok` holds (panics after 20 s).
    fn wait_for(&self, what: &str, read: &str, args: Value, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let value = self.script(read, args.clone());
            if ok(&value) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {value}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.http.delete(&self.session).send();
    }
}

/// The row of a tenant's destination as the page shows it.
const ROW: &str = "const tr = [...document.querySelectorAll('#destinations tr')]
      .find(tr => tr.dataset.tenant === arguments[0] && tr.dataset.name === arguments[1]);
    return tr ? {state: tr.querySelector('.state').textContent,
                 verify: tr.querySelector('.verify-result').textContent,
                 backlog: tr.querySelector('.backlog').textContent} : null;";

#[test]
fn the_status_page_shows_a_failing_tenant_and_verifies_destinations_in_a_browser() {
    let Some(driver) = backend_env("EMULATOR_WEBDRIVER_URL") else {
        return;
    };
    let Some(chromium) = backend_env("EMULATOR_CHROMIUM_BIN") else {
        return;
    };
    let Some(s3) = backend_env("EMULATOR_S3_ENDPOINT") else {
        return;
    };
    let bucket = unique("ui");
    let created = reqwest::blocking::Client::new()
        .put(format!("{s3}/{bucket}"))
        .send()
        .unwrap();
    assert!(created.status().is_success());

    let env = Env::new(json!({}));
    let tenants = env.path("tenants");
    std::fs::create_dir(&tenants).unwrap();
    // A regular file where the volume's directory should be: every put fails.
    std::fs::write(env.path("blocked"), "in the way").unwrap();
    let marked_up = "Good & <b>Bold</b> Co";
    let files = [
        (
            "good",
            json!({"tenant": marked_up, "destinations": [
            {"name": "vol", "type": "pv", "root": env.path("good")}]}),
        ),
        (
            "broken",
            json!({"tenant": "broken", "destinations": [
            {"name": "vol", "type": "pv", "root": env.path("blocked")}]}),
        ),
        (
            "cloud",
            json!({"tenant": "cloud", "destinations": [
            {"name": "s3", "type": "s3", "bucket": bucket, "region": "us-east-1",
             "endpoint": s3, "force_path_style": true, "access_key_id": "test",
             "secret_access_key": "not-shown-anywhere-42"}]}),
        ),
    ];
    for (file, content) in &files {
        std::fs::write(tenants.join(format!("{file}.json")), content.to_string()).unwrap();
    }
    let (token, hash) = new_token();
    env.write_config(json!({
        "enableUserEvents": true, "namespace": "acme", "ueventsSchedule": "@every 1s",
        "ingest": {"listen": "127.0.0.1:0"}, "tenants_dir": tenants,
        "admin": {"tokens": [{"name": "operator", "hash": hash}]},
    }));
    let server = env.start();
    let mut client = Client::connect(server.addr).unwrap();
    let body: String = [marked_up, "broken", "cloud"]
        .iter()
        .enumerate()
        .map(|(n, customer)| {
            format!(
                "{}\n",
                json!({"opType": "Query", "createdAt": 1_690_610_557_857u64 + n as u64,
                       "nameHints": ["User"], "userEmail": "u@example.com",
                       "customerName": customer, "responseCode": 200,
                       "requestParams": {"n": n, "email": "u@example.com"}, "latencyInMillis": 1})
            )
        })
        .collect();
    let posted = client
        .post("application/x-ndjson", None, body.as_bytes())
        .unwrap();
    assert_eq!(posted.status, 200, "{}", posted.text());

    let browser = Browser::start(&driver, &chromium);
    browser.go(&format!("http://{}/ui", server.addr));
    // A wrong token is refused and the data stays hidden.
    browser.type_into("#token", "not-a-token");
    browser.click("#sign-in");
    let refused = browser.wait_for(
        "the refusal",
        "return {error: document.querySelector('#error').textContent,
                 hidden: document.querySelector('#status').hidden};",
        json!([]),
        |v| !v["error"].as_str().unwrap_or_default().is_empty(),
    );
    assert_eq!(refused["hidden"], true, "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("not accepted"),
        "{refused}"
    );

    browser.type_into("#token", &token);
    browser.click("#sign-in");
    let broken = browser.wait_for(
        "the broken tenant shown as failing",
        ROW,
        json!(["broken", "vol"]),
        |v| {
            v["state"]
                .as_str()
                .is_some_and(|s| s.starts_with("failing"))
        },
    );
    assert!(
        broken["state"].as_str().unwrap().contains("since"),
        "{broken}"
    );
    let good = browser.wait_for(
        "the good tenant exported",
        ROW,
        json!([marked_up, "vol"]),
        |v| v["state"] == "active" && v["backlog"] == "0",
    );
    assert_eq!(good["verify"], "");
    // The tenant's name is text: no <b> element was made of it.
    let shown = browser.script(
        "return {bold: document.querySelectorAll('#destinations b').length,
                 names: [...document.querySelectorAll('#destinations tr td:first-child')]
                        .map(td => td.textContent)};",
        json!([]),
    );
    assert_eq!(shown["bold"], 0, "{shown}");
    assert!(
        shown["names"]
            .as_array()
            .unwrap()
            .contains(&json!(marked_up)),
        "{shown}"
    );
    let summary = browser.script(
        "return document.querySelector('#summary').textContent;",
        json!([]),
    );
    assert_eq!(summary, "3 tenant(s), 3 destination(s), 1 failing");

    // Verify, in the browser, on a good destination and on the broken one.
    let button = |tenant: &str, name: &str| -> String {
        let element = browser.script(
            "return [...document.querySelectorAll('#destinations tr')]
               .find(tr => tr.dataset.tenant === arguments[0] && tr.dataset.name === arguments[1])
               .querySelector('button.verify');",
            json!([tenant, name]),
        );
        element[ELEMENT].as_str().unwrap().to_string()
    };
    browser.click_element(&button("cloud", "s3"));
    browser.wait_for("cloud verified", ROW, json!(["cloud", "s3"]), |v| {
        v["verify"] == "verified"
    });
    browser.click_element(&button("broken", "vol"));
    let failed = browser.wait_for(
        "broken's verify to fail",
        ROW,
        json!(["broken", "vol"]),
        |v| {
            v["verify"]
                .as_str()
                .is_some_and(|s| s.starts_with("verify failed: "))
        },
    );
    assert!(
        failed["verify"].as_str().unwrap().len() > "verify failed: ".len(),
        "{failed}"
    );

    // The effective config, with the tenant's secret masked.
    let config = browser.wait_for(
        "the config",
        "return document.querySelector('#config').textContent;",
        json!([]),
        |v| v.as_str().is_some_and(|s| !s.is_empty()),
    );
    let config = config.as_str().unwrap();
    assert!(
        config.contains("\"secret_access_key\": \"***\""),
        "{config}"
    );
    assert!(!config.contains("not-shown-anywhere-42"), "{config}");
    assert!(config.contains("tenants_dir"), "{config}");

    // Served with a policy that allows no inline or foreign script.
    let page = client.request("GET", "/ui", &[], b"").unwrap();
    assert_eq!(page.status, 200);
    let policy = page
        .headers
        .iter()
        .find(|(k, _)| k == "content-security-policy")
        .unwrap();
    assert!(policy.1.contains("script-src 'self'"), "{policy:?}");
    drop(browser);
    server.terminate();
}
