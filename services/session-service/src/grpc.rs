//! The gRPC adapter: parses requests at the edge, checks bearer tokens, calls
//! [`SessionApp`] and turns its answers and errors into protobuf and status codes.

use common::auth::Caller;
use proto::session::v1::{self as pb, session_service_server::SessionService};
use time::OffsetDateTime;
use tonic::{Request, Response, Status};

use crate::{
    domain::{self, Credentials, ProfileUpdate, Registration},
    service::SessionApp,
    store::{sessions::SessionInfo, users::ProfileRow},
    tokens::TokenPair,
};

/// The `learngreek.session.v1.SessionService` implementation.
#[derive(Clone, Debug)]
pub struct SessionGrpc {
    app: SessionApp,
}

impl SessionGrpc {
    pub fn new(app: SessionApp) -> Self {
        Self { app }
    }

    pub fn into_server(self) -> pb::session_service_server::SessionServiceServer<Self> {
        pb::session_service_server::SessionServiceServer::new(self)
    }

    async fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        Ok(self
            .app
            .verifier
            .verify_metadata(request.metadata())
            .await?)
    }
}

fn token_pair(pair: TokenPair) -> pb::TokenPair {
    pb::TokenPair {
        access_token: pair.access_token,
        refresh_token: pair.refresh_token,
        token_type: "bearer".into(),
        expires_in: i64::try_from(pair.expires_in).unwrap_or(i64::MAX),
    }
}

fn timestamp(at: OffsetDateTime) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.unix_timestamp(),
        nanos: at.nanosecond() as i32,
    }
}

fn timestamp_ms(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

fn profile(row: ProfileRow) -> pb::Profile {
    pb::Profile {
        id: row.id.to_string(),
        email: row.email,
        full_name: row.full_name,
        is_active: row.is_active,
        is_superuser: row.is_superuser,
        email_verified_at: row.email_verified_at.map(timestamp),
        created_at: Some(timestamp(row.created_at)),
        updated_at: Some(timestamp(row.updated_at)),
        settings: Some(pb::UserSettings {
            id: row.settings_id.to_string(),
            user_id: row.id.to_string(),
            daily_goal: u32::try_from(row.daily_goal).unwrap_or_default(),
            email_notifications: row.email_notifications,
            preferred_language: row.preferred_language,
            created_at: Some(timestamp(row.settings_created_at)),
            updated_at: Some(timestamp(row.settings_updated_at)),
        }),
    }
}

fn session(info: SessionInfo, caller: &Caller) -> pb::Session {
    pb::Session {
        id: info.id.to_string(),
        created_at: Some(timestamp_ms(info.created_at_ms)),
        last_used_at: Some(timestamp_ms(info.last_used_at_ms)),
        expires_at: Some(timestamp_ms(info.expires_at_ms)),
        ip_address: info.ip_address,
        user_agent: info.user_agent,
        current: info.id == caller.session_id,
    }
}

#[tonic::async_trait]
impl SessionService for SessionGrpc {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::TokenPair>, Status> {
        let registration = Registration::from_proto(request.into_inner())?;
        let pair = self.app.register(registration).await?;
        Ok(Response::new(token_pair(pair)))
    }

    async fn login(
        &self,
        request: Request<pb::LoginRequest>,
    ) -> Result<Response<pb::TokenPair>, Status> {
        let credentials = Credentials::from_proto(request.into_inner())?;
        let pair = self.app.login(credentials).await?;
        Ok(Response::new(token_pair(pair)))
    }

    async fn refresh(
        &self,
        request: Request<pb::RefreshRequest>,
    ) -> Result<Response<pb::TokenPair>, Status> {
        let request = request.into_inner();
        let pair = self.app.refresh(request.refresh_token.trim()).await?;
        Ok(Response::new(token_pair(pair)))
    }

    async fn logout(
        &self,
        request: Request<pb::LogoutRequest>,
    ) -> Result<Response<pb::LogoutResponse>, Status> {
        let caller = self.caller(&request).await?;
        let token_revoked = self
            .app
            .logout(&caller, request.get_ref().refresh_token.trim())
            .await?;
        Ok(Response::new(pb::LogoutResponse { token_revoked }))
    }

    async fn logout_all(
        &self,
        request: Request<pb::LogoutAllRequest>,
    ) -> Result<Response<pb::LogoutAllResponse>, Status> {
        let caller = self.caller(&request).await?;
        let sessions_revoked = self.app.logout_all(&caller).await?;
        Ok(Response::new(pb::LogoutAllResponse { sessions_revoked }))
    }

    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let caller = self.caller(&request).await?;
        let sessions = self.app.list_sessions(&caller).await?;
        Ok(Response::new(pb::ListSessionsResponse {
            sessions: sessions
                .into_iter()
                .map(|info| session(info, &caller))
                .collect(),
        }))
    }

    async fn revoke_session(
        &self,
        request: Request<pb::RevokeSessionRequest>,
    ) -> Result<Response<pb::RevokeSessionResponse>, Status> {
        let caller = self.caller(&request).await?;
        let session_id = domain::session_id(&request.get_ref().session_id)?;
        self.app.revoke_session(&caller, session_id).await?;
        Ok(Response::new(pb::RevokeSessionResponse {
            token_revoked: true,
        }))
    }

    async fn get_profile(
        &self,
        request: Request<pb::GetProfileRequest>,
    ) -> Result<Response<pb::Profile>, Status> {
        let caller = self.caller(&request).await?;
        Ok(Response::new(profile(self.app.profile(&caller).await?)))
    }

    async fn update_profile(
        &self,
        request: Request<pb::UpdateProfileRequest>,
    ) -> Result<Response<pb::Profile>, Status> {
        let caller = self.caller(&request).await?;
        let update = ProfileUpdate::from_proto(request.into_inner())?;
        Ok(Response::new(profile(
            self.app.update_profile(&caller, &update).await?,
        )))
    }

    async fn get_public_keys(
        &self,
        _request: Request<pb::GetPublicKeysRequest>,
    ) -> Result<Response<pb::PublicKeys>, Status> {
        let keys = &self.app.keys;
        Ok(Response::new(pb::PublicKeys {
            keys: keys.published().iter().cloned().map(Into::into).collect(),
            issuer: keys.issuer().to_owned(),
            audience: keys.audience().to_owned(),
        }))
    }
}
