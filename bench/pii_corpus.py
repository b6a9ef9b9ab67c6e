# Writes a deterministic, labelled PII corpus for bench/vs-presidio.sh.
#
# Short docs (support tickets, e-mails, chats, forms, code comments), ~60%
# Spanish / 40% English, ~20% with no PII at all. Each line is
#   {"id", "lang": "es"|"en", "text", "entities": [{"type", "start", "end"}]}
# with Python character offsets and Presidio's type names: PERSON,
# EMAIL_ADDRESS, PHONE_NUMBER, CREDIT_CARD (Luhn-valid), IBAN_CODE (mod-97
# valid ES/DE/FR/GB), ES_NIF, ES_NIE (correct check letter), CO_CEDULA (only
# next to a context word such as "cédula", "C.C.", "documento"), IP_ADDRESS
# (v4 and v6), URL (http(s):// and www.). Hard negatives that are never
# labelled: Luhn-invalid 16-digit numbers, IBANs with wrong check digits, DNIs
# with a wrong letter, order numbers, amounts (including dotted peso amounts
# and "radicado" numbers shaped like cédulas), dates, times, versions,
# products, cities and capitalised sentence-initial words. Label counts per
# type go to stderr.
#
# usage: pii_corpus.py OUT.jsonl [--docs N] [--seed S]
import argparse
import json
import random
import re
import sys
import unicodedata
from collections import Counter

FIRST_ES = """María José Juan Carlos Luis Ana Laura Carmen Javier Miguel Antonio Francisco
Manuel David Daniel Alejandro Pablo Sergio Jorge Alberto Fernando Andrés Diego Santiago Sebastián
Mateo Nicolás Camilo Felipe Julián Esteban Mauricio Ricardo Eduardo Raúl Rubén Óscar Iván Adrián
Álvaro Gonzalo Ignacio Hugo Martín Lucas Héctor Emilio Rodrigo Guillermo Enrique Ramón Joaquín
Tomás Gabriel Samuel Valentina Camila Daniela Sofía Isabella Mariana Gabriela Natalia Paula Andrea
Catalina Juliana Alejandra Carolina Diana Lucía Marta Elena Cristina Patricia Rocío Pilar Beatriz
Isabel Teresa Raquel Silvia Nuria Irene Claudia Sara Alba Noelia Verónica Lorena Mónica Ángela
Adriana Paola Luisa Ximena Lina Yolanda Gloria Luz Rosa Inés Julia Sandra Liliana Marcela Tatiana
Johana Yesenia Wilson Jhon Edwin Fabio Hernán Gustavo Jaime Arturo Rafael Vicente Agustín""".split()
FIRST_ES += ["María José", "Juan Pablo", "José Luis", "Juan Carlos", "Luz Marina", "María Fernanda",
             "Ana María", "Juan David", "Miguel Ángel", "Luis Fernando"]
SUR_ES = """García Rodríguez González Fernández López Martínez Sánchez Pérez Gómez Martín Jiménez Ruiz
Hernández Díaz Moreno Muñoz Álvarez Romero Alonso Gutiérrez Navarro Torres Domínguez Vázquez Ramos Gil
Ramírez Serrano Blanco Molina Morales Suárez Ortega Delgado Castro Ortiz Rubio Marín Sanz Núñez
Iglesias Medina Garrido Cortés Castillo Santos Lozano Guerrero Cano Prieto Méndez Cruz Calvo Gallego
Vidal León Márquez Herrera Peña Flores Cabrera Campos Vega Fuentes Carrasco Caballero Reyes Nieto
Aguilar Pascual Santana Herrero Montero Lorenzo Hidalgo Giménez Ibáñez Ferrer Durán Benítez Mora
Vicente Vargas Arias Carmona Crespo Román Pastor Soto Sáez Velasco Moya Soler Parra Bravo Gallardo
Rojas Restrepo Cárdenas Ospina Londoño Zapata Valencia Mejía Salazar Quintero Osorio Betancur Arango
Giraldo Escobar Jaramillo Bermúdez Cifuentes Patiño Ochoa Villegas Echeverri Montoya Duque Correa""".split()
FIRST_EN = """James John Robert Michael William David Richard Joseph Thomas Charles Christopher Daniel
Matthew Anthony Mark Donald Steven Paul Andrew Joshua Kevin Brian George Timothy Ronald Jason Ryan
Jacob Gary Nicholas Eric Jonathan Stephen Larry Justin Scott Brandon Benjamin Samuel Gregory Frank
Alexander Patrick Jack Dennis Tyler Aaron Henry Adam Nathan Mary Patricia Jennifer Linda Elizabeth
Barbara Susan Jessica Sarah Karen Lisa Nancy Betty Margaret Sandra Ashley Kimberly Emily Donna
Michelle Carol Amanda Dorothy Melissa Deborah Stephanie Rebecca Sharon Laura Cynthia Kathleen Amy
Angela Shirley Anna Brenda Emma Olivia Hannah Rachel Megan Chloe Grace Lucy Sophie Oliver Harry
Charlie Alfie Freddie Priya Wei Aisha""".split()
SUR_EN = """Smith Johnson Williams Brown Jones Miller Davis Wilson Anderson Taylor Thomas Moore Jackson
Martin Lee Thompson White Harris Clark Lewis Robinson Walker Young Allen King Wright Scott Hill Green
Adams Baker Nelson Carter Mitchell Roberts Turner Phillips Campbell Parker Evans Edwards Collins
Stewart Morris Murphy Cook Rogers Morgan Cooper Peterson Bailey Reed Kelly Howard Cox Ward Richardson
Watson Brooks Wood James Bennett Gray Hughes Price Sanders Myers Long Ross Foster Powell Jenkins Perry
Russell Sullivan Bell Coleman Butler Henderson Barnes Fisher Hamilton Graham O'Brien O'Connor
McDonald MacLeod Patel Khan Nguyen Chen Walsh Byrne Doyle""".split()
CITIES = ["Madrid", "Barcelona", "Sevilla", "Valencia", "Bilbao", "Málaga", "Zaragoza", "Bogotá",
          "Medellín", "Cali", "Barranquilla", "Cartagena", "London", "New York", "Seattle", "Dublin"]
CITIES_CO = ["Bogotá", "Medellín", "Cali", "Barranquilla", "Cartagena", "Bucaramanga", "Pereira"]
PRODUCTS = ["Galaxy S23", "iPhone 15 Pro", "ThinkPad X1 Carbon", "Windows 11", "Office 365",
            "Kindle Paperwhite", "Surface Pro", "PlayStation 5", "MacBook Air", "Pixel 8",
            "Xiaomi Redmi Note 12", "Echo Dot", "Chromecast", "AirPods Pro"]
MAIL_DOMAINS = ["gmail.com", "hotmail.com", "yahoo.es", "outlook.es", "empresa.com.co", "correo.co",
                "example.com", "example.org", "acme.io", "uniandes.edu.co", "telefonica.net"]
WEB_DOMAINS = ["tiendaejemplo.es", "miempresa.com.co", "example.com", "acme.io", "banco-demo.es",
               "soporte.example.org", "shop.example.net", "portal.empresa.co"]
URL_PATHS = ["ayuda", "soporte/ticket/{n}", "es/pedidos/{n}", "login", "docs/api/v2", "account/orders?id={n}",
             "faq#devoluciones", "download/v2/setup.exe"]

# Sentence templates. {UPPER} slots are leaves (entities or hard negatives),
# {lower} slots expand recursively; "body" and "code" expand to 1-3 / 2-4 parts.
GRAMMAR = {
    "es": {
        "frame": [
            "Ticket #{TICKET}\nAsunto: {subject}\n\n{greet}\n{body}\n\n{sign}",
            "{greet}\n\n{body}\n\n{sign}",
            "{greet} {body} {sign}",
            "[{CLOCK}] {speaker}: {chat_open}\n[{CLOCK}] Agente: {agent}\n[{CLOCK}] {speaker}: {body}\n[{CLOCK}] Agente: {agent}",
            "{form_title}\n{field}\n{field}\n{field}\nMensaje: {body}",
            "El {DATE}, {PER_FULL} escribió:\n> {body}\n\n{body}",
            "{code}",
        ],
        "subject": ["Problema con mi pedido", "Reembolso", "No puedo acceder a mi cuenta",
                    "Cambio de datos", "Factura {ORDER}", "Consulta"],
        "greet": ["Hola,", "Buenos días,", "Buenas tardes equipo,", "Hola a todos,", "Hola {PER_FIRST},",
                  "Estimado {PER_FULL}:", "Buenas, {PER_FIRST}."],
        "sign": ["Saludos,\n{PER_FULL}", "Un saludo,\n{PER_FIRST}", "Gracias.", "Saludos cordiales.",
                 "Atentamente,\n{PER_FULL}\n{PHONE}", "Enviado desde mi {PRODUCT}", "Quedo atento."],
        "speaker": ["{PER_FIRST}", "{PER_FIRST}", "{PER_FULL}", "Cliente", "Usuario"],
        "chat_open": ["hola", "buenas, tengo un problema", "Hola, necesito ayuda con un pedido",
                      "Buenas noches"],
        "agent": ["Hola, ¿en qué puedo ayudarte?", "Un momento, lo reviso.",
                  "¿Me confirmas el número de pedido?", "Listo, ya quedó solucionado.",
                  "Gracias por contactarnos.", "Soy {PER_FIRST}, de soporte. Ya lo miro."],
        "form_title": ["Formulario de contacto", "Solicitud de reembolso", "Alta de cliente"],
        "field": ["Nombre: {PER_FULL}", "Correo: {EMAIL}", "Teléfono: {PHONE}", "DNI: {NIF}", "NIE: {NIE}",
                  "Cédula: {CEDULA}", "C.C.: {CEDULA}", "IBAN: {IBAN}", "Tarjeta: {CARD}", "IP: {IP}",
                  "Web: {URL}", "Pedido: {ORDER}", "Producto: {PRODUCT}", "Ciudad: {CITY}",
                  "Fecha: {DATE}", "Importe: {AMOUNT}", "Versión: {VER}"],
        "pii": [
            "Me llamo {PER_FULL} y mi teléfono es {PHONE}.",
            "Soy {PER_FIRST}, pueden escribirme a {EMAIL}.",
            "Fui atendido por {PER_FULL} en la tienda de {CITY}.",
            "Mi DNI es {NIF}.",
            "Adjunto mi NIE {NIE} para la verificación.",
            "Por favor, hagan la devolución a la cuenta {IBAN}.",
            "Pagué con la tarjeta {CARD} el {DATE}.",
            "Mi cédula es {CEDULA}.",
            "Identificado con C.C. {CEDULA} de {CITY_CO}.",
            "Número de documento: {CEDULA}.",
            "Llámenme al {PHONE} después de las {TIME}.",
            "El error aparece al entrar en {URL} desde la IP {IP}.",
            "Mi WhatsApp es {PHONE}, escríbanme por ahí.",
            "Mi compañera {PER_FULL} tuvo el mismo problema.",
            "Hablé con el Sr. {PER_SUR} y no me dio solución.",
            "La Sra. {PER_FULL} me pidió que escribiera a {EMAIL}.",
            "Pueden consultar el estado en {URL}.",
            "Mi correo es {EMAIL} y mi móvil {PHONE}.",
            "Los datos de facturación son: {PER_FULL}, NIF {NIF}.",
            "El servidor {IP} no responde desde el {DATE}.",
            "Les paso la tarjeta {CARD}, caduca el 08/27.",
            "Transferir a {IBAN} a nombre de {PER_FULL}.",
            "De parte de {PER_FIRST}: gracias por todo.",
            "{PER_FIRST} dice que el código no llegó al {PHONE}.",
            "Titular: {PER_FULL}, CC {CEDULA}.",
        ],
        "clean": [
            "El pedido {ORDER} por {AMOUNT} llegó el {DATE} a {CITY}.",
            "Tengo instalada la versión {VER} en mi {PRODUCT}.",
            "El número de seguimiento {BADCARD} no aparece en el sistema.",
            "Intenté con la cuenta {BADIBAN} pero el banco dice que no es válida.",
            "Puse el documento {BADNIF} y me da error de letra.",
            "El valor a pagar es {COP}.",
            "Radicado No. {RADICADO} del {DATE}.",
            "Gracias por la ayuda.",
            "Quedo atento a su respuesta.",
            "Nada funciona desde la actualización del {DATE} a las {TIME}.",
            "Visité la tienda de {CITY} pero estaba cerrada.",
            "Horario de atención: lunes a viernes de 9:00 a 18:00.",
            "Compré un {PRODUCT} y llegó con la pantalla rota.",
            "Factura {ORDER}, total {AMOUNT} IVA incluido.",
            "Necesito el reembolso antes del {DATE}.",
            "Urgente: el cargo de {COP} aparece dos veces.",
        ],
    },
    "en": {
        "frame": [
            "Ticket #{TICKET}\nSubject: {subject}\n\n{greet}\n{body}\n\n{sign}",
            "{greet}\n\n{body}\n\n{sign}",
            "{greet} {body} {sign}",
            "[{CLOCK}] {speaker}: {chat_open}\n[{CLOCK}] Agent: {agent}\n[{CLOCK}] {speaker}: {body}\n[{CLOCK}] Agent: {agent}",
            "{form_title}\n{field}\n{field}\n{field}\nMessage: {body}",
            "On {DATE_EN}, {PER_FULL} wrote:\n> {body}\n\n{body}",
            "{PER_FULL} wrote:\n> {body}\n\n{body}",
            "{code}",
        ],
        "subject": ["Refund request", "Can't log in", "Order {ORDER} missing", "Update my details",
                    "Question"],
        "greet": ["Hi,", "Hello,", "Hello team,", "Good morning,", "Hi {PER_FIRST},", "Dear {PER_FULL},",
                  "Hey {PER_FIRST}!"],
        "sign": ["Thanks,\n{PER_FIRST}", "Best regards,\n{PER_FULL}", "Cheers.", "Thanks in advance.",
                 "Regards,\n{PER_FULL}\n{PHONE}", "Sent from my {PRODUCT}"],
        "speaker": ["{PER_FIRST}", "{PER_FIRST}", "{PER_FULL}", "Customer", "Guest"],
        "chat_open": ["hi", "hello, I have a problem", "Hi there, I need help with an order", "Hey"],
        "agent": ["Hi, how can I help?", "One moment, checking.", "Could you confirm the order number?",
                  "Done, that should be fixed now.", "Thanks for contacting us.",
                  "I'm {PER_FIRST} from support, looking into it."],
        "form_title": ["Contact form", "Refund request", "New customer"],
        "field": ["Name: {PER_FULL}", "Email: {EMAIL}", "Phone: {PHONE}", "Card: {CARD}", "IBAN: {IBAN}",
                  "IP address: {IP}", "Website: {URL}", "Order: {ORDER}", "Product: {PRODUCT}",
                  "City: {CITY}", "Date: {DATE_EN}", "Amount: {AMOUNT}"],
        "pii": [
            "My name is {PER_FULL} and you can reach me at {PHONE}.",
            "Hi, this is {PER_FIRST}. Please email me at {EMAIL}.",
            "I was helped by {PER_FULL} at the {CITY} store.",
            "Please send the refund to {IBAN}.",
            "I paid with my card {CARD} on {DATE_EN}.",
            "Call me at {PHONE} after {TIME}.",
            "The error shows up when I open {URL} from {IP}.",
            "My colleague {PER_FULL} had the same issue.",
            "I spoke to Mr. {PER_SUR} and he said to contact {EMAIL}.",
            "Ms. {PER_SUR} asked me to send my NIE, {NIE}.",
            "My Spanish DNI is {NIF}.",
            "You can check the status at {URL}.",
            "Our server at {IP} has been down since {DATE_EN}.",
            "Billing contact: {PER_FULL}, {EMAIL}, {PHONE}.",
            "Wire it to {IBAN} (account holder {PER_FULL}).",
            "My cédula number is {CEDULA}.",
            "{PER_FIRST} says the code never reached {PHONE}.",
        ],
        "clean": [
            "Order {ORDER} for {AMOUNT} arrived on {DATE_EN} in {CITY}.",
            "I'm running version {VER} on my {PRODUCT}.",
            "Tracking number {BADCARD} doesn't work on your site.",
            "The bank rejected account {BADIBAN} as invalid.",
            "Thanks for the quick reply!",
            "Please advise.",
            "Nothing works since the update on {DATE_EN} at {TIME}.",
            "Invoice {ORDER}, total {AMOUNT}.",
            "The {CITY} office opens at {TIME}.",
            "Bought a {PRODUCT} last week and the battery died.",
            "Ticket escalated to tier 2.",
            "Tried ID {BADNIF} but the form says the letter is wrong.",
        ],
    },
}
CODE_PII = [
    "# author: {PER_FULL} <{EMAIL}>",
    "// TODO({PER_FIRST}): remove the hardcoded host {IP} before release",
    "/* API base URL: {URL} */",
    "# test card for the sandbox: {CARD}",
    "// see {URL} for the spec",
    "# contacto: {EMAIL}",
    "// Reported by {PER_FULL}, phone {PHONE}",
    'ALLOWED_HOSTS = ["{IP}"]  # staging',
    "# IBAN de pruebas: {IBAN}",
]
CODE_CLEAN = [
    "# bump to {VER} after the migration",
    "// retry up to 3 times with 250 ms backoff",
    "# FIXME: {PRODUCT} returns a 500 on empty payloads",
    "def parse_order(order_id):  # e.g. {ORDER}",
    "const TIMEOUT_MS = 3000; // runs at {TIME}",
    "// Deprecated since {VER}",
    "# TODO: validar el importe ({AMOUNT}) antes de guardar",
]
for g in GRAMMAR.values():
    g["code_pii"], g["code_clean"] = CODE_PII, CODE_CLEAN
MULTI = {"body": ("pii", "clean", " ", 1, 3), "code": ("code_pii", "code_clean", "\n", 2, 4)}
PII_LEAVES = {"PER_FIRST": "PERSON", "PER_FULL": "PERSON", "PER_SUR": "PERSON", "EMAIL": "EMAIL_ADDRESS",
              "PHONE": "PHONE_NUMBER", "CARD": "CREDIT_CARD", "IBAN": "IBAN_CODE", "NIF": "ES_NIF",
              "NIE": "ES_NIE", "CEDULA": "CO_CEDULA", "IP": "IP_ADDRESS", "URL": "URL"}
SLOT = re.compile(r"\{(\w+)\}")
NIF_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def digits(r, n):
    return "".join(r.choice("0123456789") for _ in range(n))


def luhn_digit(body):
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return str((10 - total % 10) % 10)


def card_number(r, valid=True):
    kind = r.choices(["visa", "mc", "amex"], [45, 35, 20])[0]
    prefix, n, groups = {"visa": ("4", 16, (4, 4, 4, 4)), "mc": (str(r.randint(51, 55)), 16, (4, 4, 4, 4)),
                         "amex": (r.choice(["34", "37"]), 15, (4, 6, 5))}[kind]
    body = prefix + digits(r, n - len(prefix) - 1)
    check = luhn_digit(body)
    if not valid:
        check = str((int(check) + r.randint(1, 9)) % 10)
    num, sep, out, i = body + check, r.choices([" ", "-", ""], [50, 20, 30])[0], [], 0
    for g in groups:
        out.append(num[i:i + g])
        i += g
    return sep.join(out)


def iban(r, valid=True):
    country = r.choices(["ES", "DE", "FR", "GB"], [50, 17, 17, 16])[0]
    bban = {"ES": lambda: digits(r, 20), "DE": lambda: digits(r, 18),
            "FR": lambda: digits(r, 21) + digits(r, 2),
            "GB": lambda: r.choice(["NWBK", "BARC", "HBUK", "LOYD", "MIDL"]) + digits(r, 14)}[country]()
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    check = 98 - int(numeric) % 97
    if not valid:
        check = r.choice([c for c in range(2, 99) if c != check])
    code = f"{country}{check:02d}{bban}"
    if r.random() < 0.6:
        code = " ".join(code[i:i + 4] for i in range(0, len(code), 4))
    return code


def nif(r, valid=True):
    n = r.randint(0, 99999999)
    letter = NIF_LETTERS[n % 23]
    if not valid:
        letter = r.choice([c for c in NIF_LETTERS if c != letter])
    return f"{n:08d}" + ("-" if r.random() < 0.25 else "") + letter


def nie(r):
    p = r.randint(0, 2)
    n = r.randint(0, 9999999)
    letter = NIF_LETTERS[(p * 10000000 + n) % 23]
    x = r.random()
    fmt = "{}{:07d}{}" if x < 0.7 else "{}-{:07d}-{}" if x < 0.9 else "{}{:07d}-{}"
    return fmt.format("XYZ"[p], n, letter)


def dotted(n):
    return f"{n:,}".replace(",", ".")


def cedula(r):
    length = r.choices([6, 7, 8, 10], [1, 2, 4, 4])[0]
    n = r.randint(1000000000, 1199999999) if length == 10 else r.randint(10 ** (length - 1), 10 ** length - 1)
    return dotted(n) if r.random() < 0.7 else str(n)


def phone(r, lang):
    country = r.choices(["ES", "CO", "US"], [55, 35, 10] if lang == "es" else [25, 25, 50])[0]
    intl = r.random() < 0.35
    if country == "ES":
        if r.random() < 0.65:
            n = r.choice("67") + digits(r, 8)
            if n[0] == "7":
                n = "7" + r.choice("1234") + n[2:]
            local = r.choice([f"{n[:3]} {n[3:6]} {n[6:]}", n, f"{n[:3]} {n[3:5]} {n[5:7]} {n[7:]}"])
        else:
            area = r.choice(["91", "93", "954", "963", "985"])
            n = area + r.choice("2345678") + digits(r, 8 - len(area))
            local = f"{n[:2]} {n[2:5]} {n[5:7]} {n[7:]}" if len(area) == 2 else f"{n[:3]} {n[3:5]} {n[5:7]} {n[7:]}"
        return ("+34 " + local) if intl else local
    if country == "CO":
        if r.random() < 0.7:
            n = r.choice(["300", "301", "304", "310", "311", "312", "313", "315", "316", "318", "320", "321", "350"]) + digits(r, 7)
        else:
            n = r.choice(["601", "602", "604", "605"]) + r.choice("2345678") + digits(r, 6)
        local = r.choice([f"{n[:3]} {n[3:6]} {n[6:]}", n]) if n[0] == "3" else f"{n[:3]} {n[3:6]} {n[6:]}"
        return ("+57 " + local) if intl else local
    area = r.choice(["212", "415", "646", "312", "206", "305", "617", "512", "713"])
    ex, line = str(r.randint(201, 989)), digits(r, 4)
    return f"+1 {area} {ex} {line}" if intl else r.choice([f"({area}) {ex}-{line}", f"{area}-{ex}-{line}"])


def ascii_fold(s):
    return unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode().lower().replace("'", "")


def email(r, lang):
    first = ascii_fold(r.choice(FIRST_ES if lang == "es" else FIRST_EN)).split()[0]
    last = ascii_fold(r.choice(SUR_ES if lang == "es" else SUR_EN))
    local = r.choice([f"{first}.{last}", f"{first}{last}", f"{first[0]}{last}", f"{first}_{last}{r.randint(1, 99)}",
                      f"{first}+soporte", f"{last}.{first[0]}"])
    return f"{local}@{r.choice(MAIL_DOMAINS)}"


def ip(r):
    x = r.random()
    if x < 0.15:
        return ":".join(f"{r.randint(0, 65535):04x}" for _ in range(8))
    if x < 0.25:
        return r.choice(["2001:db8::", "fe80::", "2a02:c7f:8::"]) + ":".join(f"{r.randint(1, 65535):x}" for _ in range(r.randint(1, 3)))
    if x < 0.5:
        return r.choice([f"192.168.{r.randint(0, 20)}.{r.randint(2, 254)}", f"10.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(2, 254)}"])
    return ".".join(str(v) for v in [r.randint(11, 223)] + [r.randint(0, 255) for _ in range(2)] + [r.randint(1, 254)])


def url(r):
    dom, path = r.choice(WEB_DOMAINS), r.choice(URL_PATHS).format(n=r.randint(100, 99999))
    return r.choice([f"https://www.{dom}/{path}", f"http://{dom}/{path}", f"www.{dom}", f"https://{dom}/{path}",
                     f"https://{dom}"])


def person(r, lang, form):
    es = (lang == "es") == (r.random() < 0.85)
    first = r.choice(FIRST_ES if es else FIRST_EN)
    sur = SUR_ES if es else SUR_EN
    if form == "sur":
        return r.choice(sur)
    if form == "first":
        return first
    x = r.random()
    if es and x < 0.45:
        return f"{first} {r.choice(sur)} {r.choice(sur)}"
    if not es and x < 0.08:
        return f"{first} {r.choice('ABCDEFGHJKLMRSTW')}. {r.choice(sur)}"
    return f"{first} {r.choice(sur)}"


def date(r, lang):
    d, m, y = r.randint(1, 28), r.randint(1, 12), r.randint(2021, 2025)
    if lang == "es":
        months = "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre".split()
        return r.choice([f"{d:02d}/{m:02d}/{y}", f"{d} de {months[m - 1]} de {y}", f"{y}-{m:02d}-{d:02d}", f"{d:02d}-{m:02d}-{y}"])
    months = "January February March April May June July August September October November December".split()
    return r.choice([f"{months[m - 1]} {d}, {y}", f"{m:02d}/{d:02d}/{y}", f"{y}-{m:02d}-{d:02d}", f"{d} {months[m - 1][:3]} {y}"])


def leaf(r, lang, name):
    """Text of a leaf slot."""
    return {
        "PER_FIRST": lambda: person(r, lang, "first"), "PER_FULL": lambda: person(r, lang, "full"),
        "PER_SUR": lambda: person(r, lang, "sur"), "EMAIL": lambda: email(r, lang),
        "PHONE": lambda: phone(r, lang), "CARD": lambda: card_number(r), "IBAN": lambda: iban(r),
        "NIF": lambda: nif(r), "NIE": lambda: nie(r), "CEDULA": lambda: cedula(r), "IP": lambda: ip(r),
        "URL": lambda: url(r),
        "BADCARD": lambda: card_number(r, valid=False), "BADIBAN": lambda: iban(r, valid=False),
        "BADNIF": lambda: nif(r, valid=False),
        "TICKET": lambda: str(r.randint(10000, 999999)),
        "ORDER": lambda: r.choice([f"#A-{r.randint(10000, 99999)}", f"PED-{r.randint(2021, 2025)}-{r.randint(1, 99999):05d}",
                                   str(r.randint(100000, 999999)), f"ORD-{r.randint(10000, 99999)}"]),
        "AMOUNT": lambda: r.choice([f"{r.randint(5, 999)},{r.randint(0, 99):02d} €", f"{dotted(r.randint(1000, 9999))},00 €",
                                    f"${r.randint(5, 999)}.{r.randint(0, 99):02d}", f"USD {r.randint(1, 9)},{r.randint(100, 999)}.00",
                                    f"€{r.randint(5, 500)}"]),
        "COP": lambda: r.choice([f"${dotted(r.randint(10, 9999) * 1000)}", f"$ {dotted(r.randint(10, 999) * 1000)} COP",
                                 f"{dotted(r.randint(100, 9999) * 1000)} pesos"]),
        "RADICADO": lambda: dotted(r.randint(1000000, 99999999)),
        "DATE": lambda: date(r, "es"), "DATE_EN": lambda: date(r, "en"),
        "TIME": lambda: f"{r.randint(7, 22)}:{r.choice(['00', '15', '30', '45', '05', '52'])}",
        "VER": lambda: r.choice([f"v{r.randint(1, 5)}.{r.randint(0, 12)}.{r.randint(0, 9)}",
                                 f"{r.randint(1, 17)}.{r.randint(0, 12)}.{r.randint(0, 20)}", f"v{r.randint(2, 9)}.{r.randint(0, 9)}"]),
        "PRODUCT": lambda: r.choice(PRODUCTS), "CITY": lambda: r.choice(CITIES), "CITY_CO": lambda: r.choice(CITIES_CO),
    }[name]()


def has_pii(template):
    return any(s in PII_LEAVES for s in SLOT.findall(template))


class Doc:
    def __init__(self, r, lang, pii):
        self.r, self.lang, self.pii = r, lang, pii
        self.parts, self.entities, self.pos, self.memo, self.used = [], [], 0, {}, set()
        self.clock = r.randint(8 * 60, 20 * 60)  # chat timestamps, minutes

    def emit(self, text, label=None):
        if label:
            self.entities.append({"type": label, "start": self.pos, "end": self.pos + len(text)})
        self.parts.append(text)
        self.pos += len(text)

    def pick(self, slot):
        options = GRAMMAR[self.lang][slot]
        if not self.pii:
            options = [t for t in options if not has_pii(t)]
        fresh = [t for t in options if (slot, t) not in self.used] or options
        t = self.r.choice(fresh)
        self.used.add((slot, t))
        return t

    def expand(self, template):
        last = 0
        for m in SLOT.finditer(template):
            self.emit(template[last:m.start()])
            self.slot(m.group(1))
            last = m.end()
        self.emit(template[last:])

    def slot(self, name):
        if name in MULTI:
            pii, clean, sep, lo, hi = MULTI[name]
            n = self.r.randint(lo, hi)
            kinds = ([pii] if self.pii else [clean]) + [self.r.choice([pii, clean]) if self.pii else clean for _ in range(n - 1)]
            self.r.shuffle(kinds)
            for i, k in enumerate(kinds):
                if i:
                    self.emit(sep)
                self.expand(self.pick(k))
        elif name == "speaker":  # same speaker all along the chat
            if name not in self.memo:
                t = self.pick(name)
                self.memo[name] = (leaf(self.r, self.lang, t[1:-1]), "PERSON") if has_pii(t) else (t, None)
            self.emit(*self.memo[name])
        elif name == "CLOCK":
            self.clock += self.r.randint(0, 4)
            self.emit(f"{self.clock // 60:02d}:{self.clock % 60:02d}")
        elif name.isupper():
            self.emit(leaf(self.r, self.lang, name), PII_LEAVES.get(name))
        else:
            self.expand(self.pick(name))

    def text(self):
        return "".join(self.parts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    r = random.Random(args.seed)
    counts, langs, empty = Counter(), Counter(), 0
    with open(args.out, "w", encoding="utf-8") as f:
        for i in range(args.docs):
            lang = "es" if r.random() < 0.6 else "en"
            doc = Doc(r, lang, pii=r.random() >= 0.2)
            doc.expand(doc.pick("frame"))
            text = doc.text()
            for e in doc.entities:
                assert text[e["start"]:e["end"]].strip() == text[e["start"]:e["end"]] != "", e
            counts.update(e["type"] for e in doc.entities)
            langs[lang] += 1
            empty += not doc.entities
            f.write(json.dumps({"id": f"p{i:05d}", "lang": lang, "text": text, "entities": doc.entities},
                               ensure_ascii=False) + "\n")
    print(json.dumps({"docs": args.docs, "langs": dict(langs), "docs_without_pii": empty,
                      "entities": sum(counts.values()), "per_type": dict(sorted(counts.items()))}), file=sys.stderr)


if __name__ == "__main__":
    main()
