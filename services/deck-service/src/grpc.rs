//! The gRPC adapter: verifies the caller, decodes each request into domain values
//! ([`decode`]), calls one use case of [`DeckApp`] and answers with its message or its
//! error's status. Semantics follow HTTP_API.md (the gateway maps JSON to these messages
//! one to one).

mod decode;

use common::auth::{AccessVerifier, Caller};
use proto::deck::v1::{self as pb, deck_service_server::DeckService};
use tonic::{Request, Response, Status};

use crate::{
    domain::UserId,
    error::{Error, Result},
    service::DeckApp,
};

/// The `learngreek.deck.v1.DeckService` implementation.
#[derive(Clone)]
pub struct DeckGrpc {
    app: DeckApp,
    verifier: AccessVerifier,
}

impl DeckGrpc {
    pub fn new(app: DeckApp, verifier: AccessVerifier) -> Self {
        Self { app, verifier }
    }

    async fn caller<T>(&self, request: &Request<T>) -> Result<Caller> {
        Ok(self.verifier.verify_metadata(request.metadata()).await?)
    }

    /// The calling user (any valid access token).
    async fn user<T>(&self, request: &Request<T>) -> Result<UserId> {
        Ok(UserId(self.caller(request).await?.user_id))
    }

    /// Deck and card writes need the superuser role.
    async fn superuser<T>(&self, request: &Request<T>) -> Result<()> {
        if !self.caller(request).await?.is_superuser {
            return Err(Error::PermissionDenied);
        }
        Ok(())
    }
}

type Answer<T> = std::result::Result<Response<T>, Status>;

fn answer<T>(result: Result<T>) -> Answer<T> {
    result.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl DeckService for DeckGrpc {
    async fn list_decks(
        &self,
        request: Request<pb::ListDecksRequest>,
    ) -> Answer<pb::ListDecksResponse> {
        self.user(&request).await?;
        let (level, page) = decode::list_decks(request.get_ref())?;
        answer(self.app.list_decks(level, page).await)
    }

    async fn search_decks(
        &self,
        request: Request<pb::SearchDecksRequest>,
    ) -> Answer<pb::SearchDecksResponse> {
        self.user(&request).await?;
        let (query, page) = decode::search_decks(request.get_ref())?;
        answer(self.app.search_decks(query, page).await)
    }

    async fn get_deck(&self, request: Request<pb::GetDeckRequest>) -> Answer<pb::Deck> {
        self.user(&request).await?;
        let deck = decode::get_deck(request.get_ref())?;
        answer(self.app.get_deck(deck).await)
    }

    async fn create_deck(&self, request: Request<pb::CreateDeckRequest>) -> Answer<pb::Deck> {
        self.superuser(&request).await?;
        let deck = decode::create_deck(request.get_ref())?;
        answer(self.app.create_deck(deck).await)
    }

    async fn update_deck(&self, request: Request<pb::UpdateDeckRequest>) -> Answer<pb::Deck> {
        self.superuser(&request).await?;
        let (deck, patch) = decode::update_deck(request.get_ref())?;
        answer(self.app.update_deck(deck, patch).await)
    }

    async fn delete_deck(
        &self,
        request: Request<pb::DeleteDeckRequest>,
    ) -> Answer<pb::DeleteDeckResponse> {
        self.superuser(&request).await?;
        let deck = decode::delete_deck(request.get_ref())?;
        answer(
            self.app
                .delete_deck(deck)
                .await
                .map(|()| pb::DeleteDeckResponse {}),
        )
    }

    async fn list_cards(
        &self,
        request: Request<pb::ListCardsRequest>,
    ) -> Answer<pb::ListCardsResponse> {
        self.user(&request).await?;
        let (deck, difficulty, page) = decode::list_cards(request.get_ref())?;
        answer(self.app.list_cards(deck, difficulty, page).await)
    }

    async fn search_cards(
        &self,
        request: Request<pb::SearchCardsRequest>,
    ) -> Answer<pb::SearchCardsResponse> {
        self.user(&request).await?;
        let (query, deck, page) = decode::search_cards(request.get_ref())?;
        answer(self.app.search_cards(query, deck, page).await)
    }

    async fn get_card(&self, request: Request<pb::GetCardRequest>) -> Answer<pb::Card> {
        self.user(&request).await?;
        let card = decode::get_card(request.get_ref())?;
        answer(self.app.get_card(card).await)
    }

    async fn create_card(&self, request: Request<pb::CreateCardRequest>) -> Answer<pb::Card> {
        self.superuser(&request).await?;
        let (deck, card) = decode::create_card(request.get_ref())?;
        answer(self.app.create_card(deck, card).await)
    }

    async fn create_cards(
        &self,
        request: Request<pb::CreateCardsRequest>,
    ) -> Answer<pb::CreateCardsResponse> {
        self.superuser(&request).await?;
        let (deck, cards) = decode::create_cards(request.get_ref())?;
        answer(self.app.create_cards(deck, cards).await)
    }

    async fn update_card(&self, request: Request<pb::UpdateCardRequest>) -> Answer<pb::Card> {
        self.superuser(&request).await?;
        let (card, patch) = decode::update_card(request.get_ref())?;
        answer(self.app.update_card(card, patch).await)
    }

    async fn delete_card(
        &self,
        request: Request<pb::DeleteCardRequest>,
    ) -> Answer<pb::DeleteCardResponse> {
        self.superuser(&request).await?;
        let card = decode::delete_card(request.get_ref())?;
        answer(
            self.app
                .delete_card(card)
                .await
                .map(|()| pb::DeleteCardResponse {}),
        )
    }

    async fn get_study_queue(
        &self,
        request: Request<pb::GetStudyQueueRequest>,
    ) -> Answer<pb::StudyQueue> {
        let user = self.user(&request).await?;
        let queue = decode::study_queue(request.get_ref())?;
        answer(self.app.study_queue(user, queue).await)
    }

    async fn get_study_stats(
        &self,
        request: Request<pb::GetStudyStatsRequest>,
    ) -> Answer<pb::StudyStats> {
        let user = self.user(&request).await?;
        let deck = decode::study_stats(request.get_ref())?;
        answer(self.app.study_stats(user, deck).await)
    }

    async fn initialize_study(
        &self,
        request: Request<pb::InitializeStudyRequest>,
    ) -> Answer<pb::InitializeStudyResponse> {
        let user = self.user(&request).await?;
        let (deck, cards) = decode::initialize_study(request.get_ref())?;
        answer(self.app.initialize_study(user, deck, cards).await)
    }

    async fn submit_review(
        &self,
        request: Request<pb::SubmitReviewRequest>,
    ) -> Answer<pb::ReviewResult> {
        let user = self.user(&request).await?;
        let review = decode::submit_review(request.get_ref())?;
        answer(self.app.submit_review(user, review).await)
    }

    async fn submit_reviews(
        &self,
        request: Request<pb::SubmitReviewsRequest>,
    ) -> Answer<pb::SubmitReviewsResponse> {
        let user = self.user(&request).await?;
        let (deck, session_id, reviews) = decode::submit_reviews(request.get_ref())?;
        answer(
            self.app
                .submit_reviews(user, deck, session_id, reviews)
                .await,
        )
    }

    async fn list_reviews(
        &self,
        request: Request<pb::ListReviewsRequest>,
    ) -> Answer<pb::ListReviewsResponse> {
        let user = self.user(&request).await?;
        let (days, page) = decode::list_reviews(request.get_ref())?;
        answer(self.app.list_reviews(user, days, page).await)
    }

    async fn get_dashboard(
        &self,
        request: Request<pb::GetDashboardRequest>,
    ) -> Answer<pb::Dashboard> {
        let user = self.user(&request).await?;
        let daily_goal = decode::dashboard(request.get_ref())?;
        answer(self.app.dashboard(user, daily_goal).await)
    }

    async fn list_deck_progress(
        &self,
        request: Request<pb::ListDeckProgressRequest>,
    ) -> Answer<pb::ListDeckProgressResponse> {
        let user = self.user(&request).await?;
        let page = decode::list_deck_progress(request.get_ref())?;
        answer(self.app.list_deck_progress(user, page).await)
    }

    async fn get_deck_progress(
        &self,
        request: Request<pb::GetDeckProgressRequest>,
    ) -> Answer<pb::DeckProgressDetail> {
        let user = self.user(&request).await?;
        let deck = decode::deck_progress(request.get_ref())?;
        answer(self.app.deck_progress(user, deck).await)
    }

    async fn get_trends(&self, request: Request<pb::GetTrendsRequest>) -> Answer<pb::Trends> {
        let user = self.user(&request).await?;
        let (period, deck) = decode::trends(request.get_ref())?;
        answer(self.app.trends(user, period, deck).await)
    }
}
