//! ID types: the list for every reader, and a create form for admins.

use askama::Template;
use axum::Form;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use g2p_domain::{FieldErrors, IdType, IdTypeInput};
use serde::Deserialize;

use super::{ConsoleError, ConsoleUser, Layout, field_error, render};
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Template)]
#[template(path = "id_types.html")]
struct IdTypesPage {
    layout: Layout,
    types: Vec<IdType>,
    can_create: bool,
    created: Option<String>,
    form: CreateForm,
    name_error: Option<String>,
    regex_error: Option<String>,
    form_error: Option<String>,
    csrf: String,
}

#[derive(Deserialize, Default)]
pub struct CreateForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    validation_regex: String,
}

#[derive(Deserialize)]
pub struct ListQuery {
    /// Id of the type just created, to confirm it by name.
    created: Option<i64>,
}

async fn page(
    state: &AppState,
    user: &ConsoleUser,
    status: StatusCode,
    form: CreateForm,
    errors: &FieldErrors,
    created: Option<i64>,
) -> Result<Response, ConsoleError> {
    let types = state.store.list_id_types().await?;
    let created = created.and_then(|id| types.iter().find(|t| t.id == id).map(|t| t.name.clone()));
    let name_error = field_error(errors, "name");
    let regex_error = field_error(errors, "validation_regex");
    // Anything not about one of the two inputs is shown above the form.
    let form_error = errors
        .0
        .iter()
        .filter(|(k, _)| *k != "name" && *k != "validation_regex")
        .map(|(k, v)| format!("{k}: {}", v.join("; ")))
        .reduce(|a, b| format!("{a}; {b}"));
    Ok(render(
        status,
        &IdTypesPage {
            layout: Layout::new(user, "id-types"),
            types,
            can_create: user.role.is_admin(),
            created,
            form,
            name_error,
            regex_error,
            form_error,
            csrf: user.csrf.clone(),
        },
    ))
}

pub async fn list(
    State(state): State<AppState>,
    user: ConsoleUser,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ConsoleError> {
    let created = q.ok().and_then(|Query(q)| q.created);
    page(
        &state,
        &user,
        StatusCode::OK,
        CreateForm::default(),
        &FieldErrors::new(),
        created,
    )
    .await
}

/// Creates an ID type (admins). Validation and name conflicts re-show the form with the
/// message next to the field; success redirects (post/redirect/get).
pub async fn create(
    State(state): State<AppState>,
    user: ConsoleUser,
    form: Result<Form<CreateForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    user.require_admin()?;
    let Form(form) = form.map_err(|e| ApiError::BadRequest {
        code: "bad_form",
        message: e.body_text(),
    })?;
    let input = IdTypeInput {
        name: form.name.clone(),
        validation_regex: Some(form.validation_regex.clone()),
    };
    let result = match input.parse() {
        Ok(new) => state
            .store
            .create_id_type(&new, &user.actor())
            .await
            .map_err(ConsoleError::from),
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(t) => Ok(Redirect::to(&format!("/id-types?created={}", t.id)).into_response()),
        Err(ConsoleError::Api(ApiError::Validation(errors))) => {
            page(
                &state,
                &user,
                StatusCode::UNPROCESSABLE_ENTITY,
                form,
                &errors,
                None,
            )
            .await
        }
        Err(ConsoleError::Api(ApiError::Conflict { field, message })) => {
            let mut errors = FieldErrors::new();
            let field = if field.is_empty() {
                "name".to_owned()
            } else {
                field
            };
            errors.add(field, message);
            page(&state, &user, StatusCode::CONFLICT, form, &errors, None).await
        }
        Err(e) => Err(e),
    }
}
