//! The words of the email, one table per language. A sentence that carries
//! a value is a format string: a sentence that forgets its value leaves the
//! closure's argument unused (a warning, an error under CI's clippy), and a
//! value is written as given, never read as a placeholder itself.

use std::fmt;

/// What the email says, in one language. The layouts in `templates/`
/// place these; HTML escaping is the layout's job, not the table's.
pub(super) struct Phrases {
    /// Subject line (kept free of the code: it shows on lock screens).
    pub subject: &'static str,
    /// Greeting with the user's name.
    pub greeting: fn(&mut fmt::Formatter<'_>, &str) -> fmt::Result,
    /// Greeting when the name is unknown.
    pub greeting_anonymous: &'static str,
    /// What the code is for.
    pub intro: &'static str,
    /// Until when the code works: the time (`HH:MM`, UTC) and the minutes left.
    pub expiry: fn(&mut fmt::Formatter<'_>, &str, i64) -> fmt::Result,
    /// Keep the code secret.
    pub do_not_share: &'static str,
    /// What to do when it was not you.
    pub ignore: &'static str,
}

pub(super) const EN: Phrases = Phrases {
    subject: "Your sign-in verification code",
    greeting: |f, name| write!(f, "Hello {name},"),
    greeting_anonymous: "Hello,",
    intro: "Someone, hopefully you, is signing in to your account. Enter this code to finish:",
    expiry: |f, time, minutes| write!(f, "The code works until {time} UTC (for {minutes} min)."),
    do_not_share: "Keep this code to yourself. Nobody from our team will ever ask you for it.",
    ignore: "Not you trying to sign in? Then you can ignore this email: without the code, nobody gets in.",
};

pub(super) const PT_BR: Phrases = Phrases {
    subject: "Seu código de verificação para entrar",
    greeting: |f, name| write!(f, "Olá, {name},"),
    greeting_anonymous: "Olá,",
    intro: "Alguém, esperamos que você, está entrando na sua conta. Digite este código para concluir:",
    expiry: |f, time, minutes| write!(f, "O código vale até {time} UTC (por {minutes} min)."),
    do_not_share: "Não compartilhe este código. Ninguém da nossa equipe vai pedi-lo a você.",
    ignore: "Não foi você que tentou entrar? Pode ignorar este e-mail: sem o código, ninguém acessa a conta.",
};

pub(super) const ES: Phrases = Phrases {
    subject: "Tu código de verificación para iniciar sesión",
    greeting: |f, name| write!(f, "Hola, {name}:"),
    greeting_anonymous: "Hola:",
    intro: "Alguien, esperamos que tú, está iniciando sesión en tu cuenta. Introduce este código para terminar:",
    expiry: |f, time, minutes| {
        write!(f, "El código es válido hasta las {time} UTC (durante {minutes} min).")
    },
    do_not_share: "No compartas este código. Nadie de nuestro equipo te lo pedirá nunca.",
    ignore: "¿No has intentado iniciar sesión? Puedes ignorar este correo: sin el código, nadie puede entrar.",
};

pub(super) const DE: Phrases = Phrases {
    subject: "Ihr Bestätigungscode für die Anmeldung",
    greeting: |f, name| write!(f, "Hallo {name},"),
    greeting_anonymous: "Hallo,",
    intro: "Jemand – hoffentlich Sie – meldet sich gerade bei Ihrem Konto an. Geben Sie diesen Code ein, um die Anmeldung abzuschließen:",
    expiry: |f, time, minutes| write!(f, "Der Code gilt bis {time} Uhr UTC ({minutes} Min.)."),
    do_not_share: "Geben Sie diesen Code nicht weiter. Unser Team wird Sie niemals danach fragen.",
    ignore: "Sie haben sich nicht angemeldet? Dann können Sie diese E-Mail ignorieren: Ohne den Code kommt niemand in Ihr Konto.",
};

pub(super) const FR: Phrases = Phrases {
    subject: "Votre code de vérification pour vous connecter",
    greeting: |f, name| write!(f, "Bonjour {name},"),
    greeting_anonymous: "Bonjour,",
    intro: "Quelqu’un, vous sans doute, se connecte à votre compte. Saisissez ce code pour terminer :",
    expiry: |f, time, minutes| {
        write!(f, "Le code est valable jusqu’à {time} UTC (pendant {minutes} min).")
    },
    do_not_share: "Ne communiquez ce code à personne. Notre équipe ne vous le demandera jamais.",
    ignore: "Ce n’était pas vous ? Vous pouvez ignorer cet e-mail : sans le code, personne ne peut entrer.",
};
