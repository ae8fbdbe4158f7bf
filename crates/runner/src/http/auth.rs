//! API errors and bearer-token checks (ingest and admin tokens).

use super::*;

/// An API error: a status and a JSON body `{"error": {"code", "message"}}`.
pub(super) struct ApiError {
    pub(super) status: StatusCode,
    pub(super) code: &'static str,
    pub(super) message: String,
    /// Close the connection after the answer (part of the request body was left unread).
    pub(super) close: bool,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": {"code": self.code, "message": self.message}}));
        let mut response = (self.status, body).into_response();
        if self.close {
            response.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                "Bearer".parse().expect("static header"),
            );
        }
        response
    }
}

pub(super) fn api_error(
    status: StatusCode,
    code: &'static str,
    message: impl Into<String>,
) -> ApiError {
    ApiError {
        status,
        code,
        message: message.into(),
        close: false,
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        let status = match &e {
            IngestError::Disabled => StatusCode::FORBIDDEN,
            IngestError::Malformed { .. } | IngestError::Empty => StatusCode::BAD_REQUEST,
            IngestError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            IngestError::TooLarge { .. } | IngestError::TooMany { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            IngestError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        api_error(status, e.reason(), e.to_string())
    }
}

/// Compares two digests in time independent of where they differ.
pub(super) fn digest_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(super) fn authorize(headers: &HeaderMap, tokens: &[[u8; 32]]) -> Result<(), ApiError> {
    matching_token(headers, tokens).map(|_| ())
}

/// Which of `tokens` the request's bearer token is (`None` when no token is configured).
pub(super) fn matching_token(
    headers: &HeaderMap,
    tokens: &[[u8; 32]],
) -> Result<Option<usize>, ApiError> {
    if tokens.is_empty() {
        return Ok(None);
    }
    let unauthorized = |m: &str| api_error(StatusCode::UNAUTHORIZED, "unauthorized", m);
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("missing `Authorization: Bearer <token>` header"))?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| unauthorized("the Authorization header is not `Bearer <token>`"))?;
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    // Check every configured token, so the time taken does not tell which one was close.
    let matched = tokens.iter().enumerate().fold(None, |found, (i, t)| {
        if digest_eq(t, &digest) {
            Some(i)
        } else {
            found
        }
    });
    matched
        .map(Some)
        .ok_or_else(|| unauthorized("the bearer token is not accepted"))
}

/// Who presented an admin token.
#[derive(Debug, Clone)]
pub(super) struct Admin {
    /// The token's name: the actor of what it does.
    pub(super) name: String,
    /// The one tenant it may see, if scoped.
    pub(super) tenant: Option<String>,
}

impl Admin {
    /// 403 unless the token may see `tenant`'s events and destinations (`None`: every
    /// tenant's, which only an unscoped token may see).
    pub(super) fn may_see(&self, tenant: Option<&str>) -> Result<(), ApiError> {
        match (&self.tenant, tenant) {
            (None, _) => Ok(()),
            (Some(own), Some(other)) if own == other => Ok(()),
            (Some(own), _) => Err(api_error(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "the admin token `{}` is scoped to tenant {own:?}",
                    self.name
                ),
            )),
        }
    }
}

/// The admin token presented.
pub(super) fn authorize_admin(
    headers: &HeaderMap,
    admins: &[crate::config::AdminKey],
) -> Result<Admin, ApiError> {
    if admins.is_empty() {
        return Err(api_error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "no admin tokens are configured (`admin.tokens`): the export API is off",
        ));
    }
    let digests: Vec<[u8; 32]> = admins.iter().map(|a| a.digest).collect();
    // `admins` is not empty, so a match is a name.
    let index = matching_token(headers, &digests)?.unwrap_or_default();
    Ok(Admin {
        name: admins[index].name.clone(),
        tenant: admins[index].tenant.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_checked_against_their_hashes() {
        let token = "ast_secret";
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let tokens = [[0u8; 32], digest];
        let mut headers = HeaderMap::new();
        assert_eq!(
            authorize(&headers, &tokens).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        headers.insert(header::AUTHORIZATION, "Bearer ast_secret".parse().unwrap());
        assert!(authorize(&headers, &tokens).is_ok());
        headers.insert(header::AUTHORIZATION, "Bearer ast_secreT".parse().unwrap());
        assert!(authorize(&headers, &tokens).is_err());
        headers.insert(header::AUTHORIZATION, "Basic ast_secret".parse().unwrap());
        assert!(authorize(&headers, &tokens).is_err());
        assert!(
            authorize(&HeaderMap::new(), &[]).is_ok(),
            "no tokens configured"
        );
    }
}
